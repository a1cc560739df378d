//! Parsing of `#[event_handler(...)]` arguments: hand-written `Parse` impls over custom keywords.
//!
//! Each argument is parsed on its own; a bad one is recorded and parsing resumes after the next
//! top-level comma, so every mistake in the attribute is reported at once. Values are checked
//! as they are parsed (durations, zero counts, topics and groups by the `bus-names` rules);
//! relations between arguments (duplicates, conflicts) are checked by [`crate::event_handler`].

use std::time::Duration;

use proc_macro2::{Delimiter, Span, TokenStream, TokenTree};
use syn::ext::IdentExt;
use syn::parse::{ParseStream, Parser};
use syn::{Ident, LitStr, Token};

mod kw {
    syn::custom_keyword!(topic);
    syn::custom_keyword!(group);
    syn::custom_keyword!(retry);
    syn::custom_keyword!(timeout);
    syn::custom_keyword!(recovery);
    syn::custom_keyword!(logging);
    syn::custom_keyword!(metrics);
    syn::custom_keyword!(error_handler);
    syn::custom_keyword!(concurrency);
    syn::custom_keyword!(ordered);
    syn::custom_keyword!(max_deliver);
    syn::custom_keyword!(backoff);
    syn::custom_keyword!(attempts);
    syn::custom_keyword!(initial_delay);
    syn::custom_keyword!(max_delay);
    syn::custom_keyword!(multiplier);
    syn::custom_keyword!(jitter);
    syn::custom_keyword!(level);
}

/// The valid top-level arguments, as listed in "unknown argument" errors.
pub(crate) const VALID_ARGS: &str = "`topic = ..`, `group = \"..\"`, `retry(attempts = N, ..)`, \
    `timeout = \"30s\"`, `recovery`, `logging`, `logging(level = \"debug\")`, `metrics`, \
    `error_handler = path`, `concurrency = N`, `ordered`, `max_deliver = N`, \
    `backoff = [\"1s\", \"5s\"]`, `crate = \"..\"`";

const VALID_RETRY_ARGS: &str = "`attempts = N`, `initial_delay = \"100ms\"`, \
    `max_delay = \"10s\"`, `multiplier = 2.0`, `jitter = 0.2`";

const VALID_LEVELS: &str = "\"trace\", \"debug\", \"info\", \"warn\" or \"error\"";

/// A duration literal, parsed at compile time.
#[derive(Clone)]
pub(crate) struct DurationLit {
    pub(crate) value: Duration,
    pub(crate) span: Span,
}

/// Where the handler listens.
#[derive(Clone)]
pub(crate) enum TopicArg {
    /// A string literal filter, already checked against the subject rules.
    Literal(LitStr),
    /// A path to a `Topic<E>` constant (or any expression of that type).
    Path(syn::Path),
}

/// `retry(...)`.
#[derive(Clone)]
pub(crate) struct RetryArgs {
    pub(crate) attempts: u32,
    pub(crate) initial_delay: Option<DurationLit>,
    pub(crate) max_delay: Option<DurationLit>,
    pub(crate) multiplier: Option<f64>,
    pub(crate) jitter: Option<f64>,
}

/// One `#[event_handler]` argument: its key's span (for duplicate errors) and its value.
#[derive(Clone)]
pub(crate) struct Arg {
    pub(crate) key: Ident,
    pub(crate) value: ArgValue,
}

/// The value of an argument.
#[derive(Clone)]
pub(crate) enum ArgValue {
    Topic(TopicArg),
    Group(LitStr),
    Retry(RetryArgs),
    Timeout(DurationLit),
    Recovery,
    /// `logging` or `logging(level = "..")`: the `tracing::Level` constant name.
    Logging(Option<Ident>),
    Metrics,
    ErrorHandler(syn::Path),
    Concurrency(usize),
    Ordered,
    MaxDeliver(u32),
    Backoff(Vec<DurationLit>),
    Crate(syn::Path),
}

impl ArgValue {
    /// Whether the argument adds a middleware layer (whose order matters).
    pub(crate) fn is_middleware(&self) -> bool {
        matches!(
            self,
            ArgValue::Retry(_)
                | ArgValue::Timeout(_)
                | ArgValue::Recovery
                | ArgValue::Logging(_)
                | ArgValue::Metrics
                | ArgValue::ErrorHandler(_)
        )
    }
}

/// All arguments that parsed, plus the errors of those that did not.
pub(crate) struct Args {
    pub(crate) items: Vec<Arg>,
    pub(crate) errors: Vec<syn::Error>,
}

impl Args {
    /// Parses the attribute's tokens; never fails as a whole.
    pub(crate) fn parse_tokens(tokens: TokenStream) -> Args {
        let mut args = Args {
            items: Vec::new(),
            errors: Vec::new(),
        };
        let parser = |input: ParseStream<'_>| {
            while !input.is_empty() {
                match parse_arg(input) {
                    Ok(arg) => args.items.push(arg),
                    Err(e) => {
                        args.errors.push(e);
                        skip_past_comma(input)?;
                        continue;
                    }
                }
                if input.is_empty() {
                    break;
                }
                if let Err(e) = input.parse::<Token![,]>() {
                    args.errors.push(syn::Error::new(
                        e.span(),
                        "expected `,` between `#[event_handler]` arguments",
                    ));
                    skip_past_comma(input)?;
                }
            }
            Ok(())
        };
        if let Err(e) = parser.parse2(tokens) {
            args.errors.push(e);
        }
        args
    }
}

/// Skips tokens up to and including the next top-level comma (or to the end).
fn skip_past_comma(input: ParseStream<'_>) -> syn::Result<()> {
    input.step(|cursor| {
        let mut rest = *cursor;
        while let Some((tt, next)) = rest.token_tree() {
            if let TokenTree::Punct(p) = &tt
                && p.as_char() == ','
            {
                return Ok(((), next));
            }
            rest = next;
        }
        Ok(((), rest))
    })
}

fn parse_arg(input: ParseStream<'_>) -> syn::Result<Arg> {
    let lookahead = input.lookahead1();
    let (key, value) = if lookahead.peek(kw::topic) {
        let key = key::<kw::topic>(input)?;
        eq(
            input,
            "topic",
            "`topic = \"cqc.events.v1.price_updated\"` or `topic = MY_TOPIC`",
        )?;
        let value = if input.peek(LitStr) {
            let lit: LitStr = input.parse()?;
            if let Err(e) = bus_names::check_filter(&lit.value()) {
                return Err(syn::Error::new(
                    lit.span(),
                    format!("invalid topic {:?}: {}", lit.value(), e.reason()),
                ));
            }
            TopicArg::Literal(lit)
        } else if input.peek(Ident::peek_any) || input.peek(Token![::]) {
            TopicArg::Path(input.parse()?)
        } else {
            return Err(input.error(
                "expected a topic: a string literal like \"cqc.events.v1.price_updated\" or the path of a `Topic<E>` constant",
            ));
        };
        (key, ArgValue::Topic(value))
    } else if lookahead.peek(kw::group) {
        let key = key::<kw::group>(input)?;
        eq(input, "group", "`group = \"risk\"`")?;
        let lit: LitStr = input.parse().map_err(|e| {
            syn::Error::new(
                e.span(),
                "expected the group as a string literal: `group = \"risk\"`",
            )
        })?;
        if let Err(e) = bus_names::check_group(&lit.value()) {
            return Err(syn::Error::new(
                lit.span(),
                format!("invalid group {:?}: {}", lit.value(), e.reason()),
            ));
        }
        (key, ArgValue::Group(lit))
    } else if lookahead.peek(kw::retry) {
        let key = key::<kw::retry>(input)?;
        let Some(group) = delimited(input, Delimiter::Parenthesis) else {
            return Err(syn::Error::new(
                key.span(),
                format!(
                    "`retry` needs its settings: `retry(attempts = 3)`; the settings are {VALID_RETRY_ARGS}"
                ),
            ));
        };
        let retry = parse_retry(group.0, group.1)?;
        (key, ArgValue::Retry(retry))
    } else if lookahead.peek(kw::timeout) {
        let key = key::<kw::timeout>(input)?;
        eq(input, "timeout", "`timeout = \"30s\"`")?;
        let d = duration(input)?;
        if d.value.is_zero() {
            return Err(syn::Error::new(
                d.span,
                "a zero timeout would cancel every handler at once; give the time a handler may take, like \"30s\"",
            ));
        }
        (key, ArgValue::Timeout(d))
    } else if lookahead.peek(kw::recovery) {
        (flag::<kw::recovery>(input)?, ArgValue::Recovery)
    } else if lookahead.peek(kw::logging) {
        let key = key::<kw::logging>(input)?;
        let level = match delimited(input, Delimiter::Parenthesis) {
            None => None,
            Some((tokens, span)) => Some(parse_logging(tokens, span)?),
        };
        (key, ArgValue::Logging(level))
    } else if lookahead.peek(kw::metrics) {
        (flag::<kw::metrics>(input)?, ArgValue::Metrics)
    } else if lookahead.peek(kw::error_handler) {
        let key = key::<kw::error_handler>(input)?;
        eq(input, "error_handler", "`error_handler = my_error_handler`")?;
        (key, ArgValue::ErrorHandler(input.parse()?))
    } else if lookahead.peek(kw::concurrency) {
        let key = key::<kw::concurrency>(input)?;
        eq(input, "concurrency", "`concurrency = 8`")?;
        let n = positive::<usize>(
            input,
            "concurrency must be at least 1: it is how many handlers run at once (use `ordered` for one at a time, in order)",
        )?;
        (key, ArgValue::Concurrency(n))
    } else if lookahead.peek(kw::ordered) {
        (flag::<kw::ordered>(input)?, ArgValue::Ordered)
    } else if lookahead.peek(kw::max_deliver) {
        let key = key::<kw::max_deliver>(input)?;
        eq(input, "max_deliver", "`max_deliver = 5`")?;
        let n = positive::<u32>(
            input,
            "max_deliver must be at least 1: it counts every delivery, the first included",
        )?;
        (key, ArgValue::MaxDeliver(n))
    } else if lookahead.peek(kw::backoff) {
        let key = key::<kw::backoff>(input)?;
        eq(input, "backoff", "`backoff = [\"1s\", \"5s\", \"30s\"]`")?;
        let Some((tokens, span)) = delimited(input, Delimiter::Bracket) else {
            return Err(input.error(
                "expected a list of delays in brackets: `backoff = [\"1s\", \"5s\", \"30s\"]`",
            ));
        };
        (key, ArgValue::Backoff(parse_backoff(tokens, span)?))
    } else if lookahead.peek(Token![crate]) {
        let token: Token![crate] = input.parse()?;
        let key = Ident::new("crate", token.span);
        eq(input, "crate", "`crate = \"my_bus\"`")?;
        let lit: LitStr = input.parse()?;
        let path = lit.parse::<syn::Path>().map_err(|_| {
            syn::Error::new(
                lit.span(),
                format!(
                    "`crate` must name the runtime crate by a path, like \"bus\" or \"::my_bus\", not {:?}",
                    lit.value()
                ),
            )
        })?;
        (key, ArgValue::Crate(path))
    } else if input.peek(Ident::peek_any) {
        let ident = input.call(Ident::parse_any)?;
        return Err(syn::Error::new(
            ident.span(),
            format!("unknown `#[event_handler]` argument `{ident}`; expected one of: {VALID_ARGS}"),
        ));
    } else {
        let e = lookahead.error();
        return Err(syn::Error::new(
            e.span(),
            format!("expected an `#[event_handler]` argument, one of: {VALID_ARGS}"),
        ));
    };
    Ok(Arg { key, value })
}

/// Parses a custom keyword and returns it as an identifier with its span.
fn key<K: syn::parse::Parse>(input: ParseStream<'_>) -> syn::Result<Ident> {
    let ident = input.fork().call(Ident::parse_any)?;
    input.parse::<K>()?;
    Ok(ident)
}

/// Parses a flag (an argument without a value), rejecting `flag = ..` and `flag(..)`.
fn flag<K: syn::parse::Parse>(input: ParseStream<'_>) -> syn::Result<Ident> {
    let ident = key::<K>(input)?;
    if input.peek(Token![=]) || input.peek(syn::token::Paren) {
        return Err(syn::Error::new(
            ident.span(),
            format!("`{ident}` takes no value: write `{ident}` alone, or leave it out"),
        ));
    }
    Ok(ident)
}

fn eq(input: ParseStream<'_>, name: &str, example: &str) -> syn::Result<()> {
    if input.peek(Token![=]) {
        input.parse::<Token![=]>()?;
        Ok(())
    } else {
        Err(input.error(format!("expected `=` after `{name}`: {example}")))
    }
}

/// The next token tree if it is a group with `delimiter`: its contents and span.
fn delimited(input: ParseStream<'_>, delimiter: Delimiter) -> Option<(TokenStream, Span)> {
    input
        .step(|cursor| match cursor.token_tree() {
            Some((TokenTree::Group(g), next)) if g.delimiter() == delimiter => {
                Ok(((g.stream(), g.span()), next))
            }
            _ => Err(cursor.error("no group")),
        })
        .ok()
}

fn duration(input: ParseStream<'_>) -> syn::Result<DurationLit> {
    let lit: LitStr = input.parse().map_err(|e| {
        syn::Error::new(
            e.span(),
            "expected a duration as a string literal, like \"250ms\", \"1s\" or \"2m\"",
        )
    })?;
    parse_duration(&lit)
}

pub(crate) fn parse_duration(lit: &LitStr) -> syn::Result<DurationLit> {
    match humantime::parse_duration(lit.value().trim()) {
        Ok(value) => Ok(DurationLit {
            value,
            span: lit.span(),
        }),
        Err(e) => Err(syn::Error::new(
            lit.span(),
            format!(
                "invalid duration {:?}: {e}; write a number and a unit, like \"250ms\", \"1s\" or \"2m\"",
                lit.value()
            ),
        )),
    }
}

fn positive<N>(input: ParseStream<'_>, zero_message: &str) -> syn::Result<N>
where
    N: std::str::FromStr + PartialEq + Default,
    N::Err: std::fmt::Display,
{
    let lit: syn::LitInt = input
        .parse()
        .map_err(|e| syn::Error::new(e.span(), "expected a positive integer literal, like `4`"))?;
    let n: N = lit.base10_parse()?;
    if n == N::default() {
        return Err(syn::Error::new(lit.span(), zero_message));
    }
    Ok(n)
}

fn number(input: ParseStream<'_>, what: &str) -> syn::Result<(f64, Span)> {
    let lit: syn::Lit = input.parse()?;
    let value = match &lit {
        syn::Lit::Float(f) => f.base10_parse::<f64>()?,
        syn::Lit::Int(i) => i.base10_parse::<f64>()?,
        other => {
            return Err(syn::Error::new(
                other.span(),
                format!("expected a number for `{what}`, like `2.0`"),
            ));
        }
    };
    Ok((value, lit.span()))
}

/// Parses the inside of `retry(...)`, reporting every bad setting at once.
fn parse_retry(tokens: TokenStream, span: Span) -> syn::Result<RetryArgs> {
    let mut errors: Vec<syn::Error> = Vec::new();
    let mut attempts = None;
    let mut initial_delay = None;
    let mut max_delay = None;
    let mut multiplier = None;
    let mut jitter = None;
    let parser = |input: ParseStream<'_>| {
        while !input.is_empty() {
            let result = (|| -> syn::Result<()> {
                let lookahead = input.lookahead1();
                let key = input.fork().call(Ident::parse_any)?;
                let dup = |seen: bool| {
                    if seen {
                        Err(syn::Error::new(
                            key.span(),
                            format!("duplicate `{key}` in `retry(...)`; give it once"),
                        ))
                    } else {
                        Ok(())
                    }
                };
                if lookahead.peek(kw::attempts) {
                    input.parse::<kw::attempts>()?;
                    eq(input, "attempts", "`attempts = 3`")?;
                    let n = positive::<u32>(
                        input,
                        "retry attempts must be at least 1 (the first run counts): `attempts = 3` runs the handler up to three times",
                    )?;
                    dup(attempts.is_some())?;
                    attempts = Some(n);
                } else if lookahead.peek(kw::initial_delay) {
                    input.parse::<kw::initial_delay>()?;
                    eq(input, "initial_delay", "`initial_delay = \"100ms\"`")?;
                    let d = duration(input)?;
                    dup(initial_delay.is_some())?;
                    initial_delay = Some(d);
                } else if lookahead.peek(kw::max_delay) {
                    input.parse::<kw::max_delay>()?;
                    eq(input, "max_delay", "`max_delay = \"10s\"`")?;
                    let d = duration(input)?;
                    dup(max_delay.is_some())?;
                    max_delay = Some(d);
                } else if lookahead.peek(kw::multiplier) {
                    input.parse::<kw::multiplier>()?;
                    eq(input, "multiplier", "`multiplier = 2.0`")?;
                    let (m, span) = number(input, "multiplier")?;
                    if !(m >= 1.0 && m.is_finite()) {
                        return Err(syn::Error::new(
                            span,
                            "the retry multiplier must be at least 1.0 (delays never shrink), like `2.0`",
                        ));
                    }
                    dup(multiplier.is_some())?;
                    multiplier = Some(m);
                } else if lookahead.peek(kw::jitter) {
                    input.parse::<kw::jitter>()?;
                    eq(input, "jitter", "`jitter = 0.2`")?;
                    let (j, span) = number(input, "jitter")?;
                    if !(0.0..=1.0).contains(&j) {
                        return Err(syn::Error::new(
                            span,
                            "jitter is a fraction of each delay between 0.0 and 1.0, like `0.2` for ±20%",
                        ));
                    }
                    dup(jitter.is_some())?;
                    jitter = Some(j);
                } else {
                    return Err(syn::Error::new(
                        key.span(),
                        format!(
                            "unknown `retry` setting `{key}`; expected one of: {VALID_RETRY_ARGS}"
                        ),
                    ));
                }
                Ok(())
            })();
            if let Err(e) = result {
                errors.push(e);
                skip_past_comma(input)?;
                continue;
            }
            if !input.is_empty()
                && let Err(e) = input.parse::<Token![,]>()
            {
                errors.push(e);
                skip_past_comma(input)?;
            }
        }
        Ok(())
    };
    if let Err(e) = parser.parse2(tokens) {
        errors.push(e);
    }
    if let (Some(init), Some(max)) = (&initial_delay, &max_delay)
        && max.value < init.value
    {
        errors.push(syn::Error::new(
            max.span,
            "max_delay is below initial_delay; raise max_delay or lower initial_delay",
        ));
    }
    if attempts.is_none() && errors.is_empty() {
        errors.push(syn::Error::new(
            span,
            "`retry` needs `attempts = N`, the most runs in all (the first included): `retry(attempts = 3)`",
        ));
    }
    combine(errors)?;
    Ok(RetryArgs {
        attempts: attempts.unwrap_or(1),
        initial_delay,
        max_delay,
        multiplier,
        jitter,
    })
}

fn parse_logging(tokens: TokenStream, span: Span) -> syn::Result<Ident> {
    let parser = |input: ParseStream<'_>| -> syn::Result<Ident> {
        if input.is_empty() {
            return Err(syn::Error::new(
                span,
                "write `logging` alone for INFO, or `logging(level = \"debug\")`",
            ));
        }
        if !input.peek(kw::level) {
            let key = input.call(Ident::parse_any)?;
            return Err(syn::Error::new(
                key.span(),
                format!("unknown `logging` setting `{key}`; expected `level = \"debug\"`"),
            ));
        }
        input.parse::<kw::level>()?;
        eq(input, "level", "`level = \"debug\"`")?;
        let lit: LitStr = input.parse()?;
        let name = match lit.value().to_ascii_lowercase().as_str() {
            "trace" => "TRACE",
            "debug" => "DEBUG",
            "info" => "INFO",
            "warn" | "warning" => "WARN",
            "error" => "ERROR",
            _ => {
                return Err(syn::Error::new(
                    lit.span(),
                    format!(
                        "unknown log level {:?}; expected {VALID_LEVELS}",
                        lit.value()
                    ),
                ));
            }
        };
        input.parse::<Option<Token![,]>>()?;
        Ok(Ident::new(name, lit.span()))
    };
    parser.parse2(tokens)
}

fn parse_backoff(tokens: TokenStream, span: Span) -> syn::Result<Vec<DurationLit>> {
    let parser = |input: ParseStream<'_>| -> syn::Result<Vec<DurationLit>> {
        let mut errors = Vec::new();
        let mut delays = Vec::new();
        let lits = input.parse_terminated(|i: ParseStream<'_>| i.parse::<LitStr>(), Token![,])?;
        for lit in lits {
            match parse_duration(&lit) {
                Ok(d) if d.value.is_zero() => errors.push(syn::Error::new(
                    d.span,
                    "a zero redelivery delay makes a hot redelivery loop; give a delay like \"1s\"",
                )),
                Ok(d) => delays.push(d),
                Err(e) => errors.push(e),
            }
        }
        combine(errors)?;
        Ok(delays)
    };
    let delays = parser.parse2(tokens)?;
    if delays.is_empty() {
        return Err(syn::Error::new(
            span,
            "`backoff` needs at least one delay, like `backoff = [\"1s\", \"5s\", \"30s\"]` (the last one repeats)",
        ));
    }
    Ok(delays)
}

fn combine(errors: Vec<syn::Error>) -> syn::Result<()> {
    let mut errors = errors.into_iter();
    match errors.next() {
        None => Ok(()),
        Some(mut first) => {
            for e in errors {
                first.combine(e);
            }
            Err(first)
        }
    }
}
