//! `bus topics` and `bus docs`: the events known, as a list and as an AsyncAPI 3.0 document.

use std::io::Write;

use bus::EventBusConfig;
use bus_build::AsyncApi;

use crate::args::DocsArgs;
use crate::catalog::Catalog;
use crate::error::Error;

/// `bus topics`: one line per event, topic then full name.
pub(crate) fn topics(catalog: &Catalog, out: &mut dyn Write) -> Result<(), Error> {
    for (topic, message) in catalog.schema().events() {
        writeln!(out, "{topic}  {}", message.full_name())?;
    }
    Ok(())
}

/// `bus docs`: the AsyncAPI document of the known events, with the configured servers and
/// dead-letter prefix.
pub(crate) fn docs(
    catalog: &Catalog,
    config: &EventBusConfig,
    args: &DocsArgs,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let text = document(catalog, config, args)?;
    match &args.output {
        Some(path) => std::fs::write(path, text)
            .map_err(|e| Error::new(format!("writing `{}`: {e}", path.display())))?,
        None => out.write_all(text.as_bytes())?,
    }
    Ok(())
}

/// The document as written: two-space indented JSON and a final newline.
fn document(catalog: &Catalog, config: &EventBusConfig, args: &DocsArgs) -> Result<String, Error> {
    let mut settings = AsyncApi::new()
        .version(
            args.api_version
                .clone()
                .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_owned()),
        )
        .dead_letter_prefix(config.dead_letter.subject_prefix.clone())
        .sends(args.sends.iter().cloned());
    if let Some(title) = &args.title {
        settings = settings.title(title.clone());
    }
    match config.servers.as_slice() {
        [one] => settings = settings.server("default", one.clone()),
        many => {
            for (i, url) in many.iter().enumerate() {
                settings = settings.server(format!("server-{}", i + 1), url.clone());
            }
        }
    }
    for (group, event) in &args.receives {
        settings = settings.receives(group.clone(), [event.clone()]);
    }
    let doc = catalog
        .schema()
        .asyncapi(&settings)
        .map_err(|e| Error::new(e.to_string()))?;
    let mut text = serde_json::to_string_pretty(&doc).map_err(std::io::Error::from)?;
    text.push('\n');
    Ok(text)
}
