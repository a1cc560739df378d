//! The NATS connection: every configured server, auth, TLS, reconnect forever, logged events.

use std::time::Duration;

use async_nats::{ConnectErrorKind, ConnectOptions, Event, ServerAddr};

use crate::{Error, EventBusConfig};

/// Connects to the configured servers. The client fails over among all of them and reconnects
/// forever (delays growing to 4 s); connection events are logged with `tracing`.
pub(crate) async fn connect(config: &EventBusConfig) -> Result<async_nats::Client, Error> {
    let servers = config.servers.join(", ");
    let addrs = config
        .servers
        .iter()
        .map(|s| {
            s.parse::<ServerAddr>().map_err(|e| {
                Error::Config(format!(
                    "`servers` entry {s:?} is not a NATS URL ({e}): write e.g. `nats://host:4222`"
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let options = options(config).await?;
    options.connect(addrs).await.map_err(|e| {
        let kind = if e.kind() == ConnectErrorKind::Io && is_tls_failure(&e) {
            ConnectErrorKind::Tls
        } else {
            e.kind()
        };
        let source: crate::BoxError = match kind {
            ConnectErrorKind::AuthorizationViolation => format!(
                "the server refused the credentials (authorization violation): check `auth` \
                 (BUS_USER/BUS_PASSWORD, BUS_TOKEN, BUS_NKEY or BUS_CREDENTIALS_FILE) ({e})"
            )
            .into(),
            ConnectErrorKind::Authentication => {
                format!("authentication failed: check the nkey seed or credentials file ({e})")
                    .into()
            }
            ConnectErrorKind::Tls => format!(
                "TLS failed: check `tls` (CA file, client certificate and key) and that the \
                 server speaks TLS ({e})"
            )
            .into(),
            ConnectErrorKind::Io | ConnectErrorKind::TimedOut | ConnectErrorKind::Dns => {
                format!("no server reachable: check `servers` and that nats-server runs ({e})")
                    .into()
            }
            _ => Box::new(e),
        };
        Error::Connect { servers, source }
    })
}

/// Whether a connect error comes from the TLS handshake: rustls' rejections (an untrusted
/// certificate, a wrong name, a server that does not speak TLS) reach async-nats as I/O errors
/// that carry a `rustls::Error`.
fn is_tls_failure(e: &async_nats::ConnectError) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(c) = cause {
        if c.is::<async_nats::rustls::Error>() {
            return true;
        }
        if let Some(io) = c.downcast_ref::<std::io::Error>()
            && io
                .get_ref()
                .is_some_and(|inner| inner.is::<async_nats::rustls::Error>())
        {
            return true;
        }
        cause = c.source();
    }
    false
}

async fn options(config: &EventBusConfig) -> Result<ConnectOptions, Error> {
    let auth = &config.auth;
    let mut options = ConnectOptions::new();
    if let (Some(user), Some(password)) = (&auth.user, &auth.password) {
        options = options.user_and_password(user.clone(), password.clone());
    }
    if let Some(token) = &auth.token {
        options = options.token(token.clone());
    }
    if let Some(seed) = &auth.nkey {
        options = options.nkey(seed.clone());
    }
    if let Some(path) = &auth.credentials_file {
        options = options.credentials_file(path).await.map_err(|e| {
            Error::Config(format!(
                "cannot use credentials file `{}`: {e}: check `auth.credentials_file`",
                path.display()
            ))
        })?;
    }
    if let Some(tls) = &config.tls {
        if tls.required {
            options = options.require_tls(true);
        }
        if let Some(ca) = &tls.ca_file {
            options = options.add_root_certificates(ca.clone());
        }
        match (&tls.cert_file, &tls.key_file) {
            (Some(cert), Some(key)) => {
                options = options.add_client_certificate(cert.clone(), key.clone());
            }
            (None, None) => {}
            _ => {
                return Err(Error::Config(
                    "`tls.cert_file` and `tls.key_file` go together: set both for mutual TLS, \
                     or neither"
                        .into(),
                ));
            }
        }
    }
    let name = config.consumer_name.clone();
    Ok(options
        .name(name)
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(5))
        .event_callback(|event| async move { log_event(&event) }))
}

fn log_event(event: &Event) {
    match event {
        Event::Connected => tracing::info!("NATS connection (re)established"),
        Event::Disconnected => {
            tracing::warn!("NATS connection lost; reconnecting in the background");
        }
        Event::LameDuckMode => {
            tracing::warn!("NATS server entered lame duck mode; the client will move to another");
        }
        Event::SlowConsumer(sid) => {
            tracing::warn!(
                sid,
                "NATS slow consumer: messages dropped (JetStream redelivers them)"
            );
        }
        Event::ServerError(e) => tracing::error!(error = %e, "NATS server error"),
        Event::ClientError(e) => tracing::warn!(error = %e, "NATS client error"),
        Event::Draining => tracing::debug!("NATS connection draining"),
        Event::Closed => tracing::debug!("NATS connection closed"),
    }
}
