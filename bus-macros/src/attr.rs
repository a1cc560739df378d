//! Parsing of `#[event_handler(...)]` arguments: hand-written parse functions over custom
//! keywords, one per argument (and one per `retry(...)` setting).
//!
//! Every mistake is recorded in the [`Ctxt`], on the offending tokens, and parsing resumes after
//! the next top-level comma, so all of them are reported at once. Values are checked as they are
//! parsed (durations, zero counts, topics and groups by the `bus-names` rules), keys given twice
//! by [`Keys`], and the one relation between arguments (`ordered` with `concurrency`) by
//! [`Config::from_args`].

use std::time::Duration;

use proc_macro2::{Delimiter, Span, TokenStream, TokenTree};
use syn::ext::IdentExt;
use syn::parse::{Lookahead1, ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::{Ident, LitStr, Token};

use crate::ctxt::{Ctxt, Keys};

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
    syn::custom_keyword!(ordered_by);
    syn::custom_keyword!(ordered_by_header);
    syn::custom_keyword!(max_deliver);
    syn::custom_keyword!(backoff);
    syn::custom_keyword!(attempts);
    syn::custom_keyword!(initial_delay);
    syn::custom_keyword!(max_delay);
    syn::custom_keyword!(multiplier);
    syn::custom_keyword!(jitter);
    syn::custom_keyword!(level);
    syn::custom_keyword!(start);
    syn::custom_keyword!(durable);
}

/// The valid top-level arguments, as listed in "unknown argument" errors.
const VALID_ARGS: &str = "`topic = ..`, `group = \"..\"`, `retry(attempts = N, ..)`, \
    `timeout = \"30s\"`, `recovery`, `logging`, `logging(level = \"debug\")`, `metrics`, \
    `error_handler = path`, `concurrency = N`, `ordered`, `ordered_by = field`, \
    `ordered_by_header = \"..\"`, `max_deliver = N`, \
    `backoff = [\"1s\", \"5s\"]`, `start = \"all\"`, `durable = \"..\"`, `crate = \"..\"`";

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
    /// A string literal filter, already checked with `bus_names::check_filter`.
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

/// An argument that adds a middleware layer (whose order matters).
#[derive(Clone)]
pub(crate) enum Layer {
    Retry(RetryArgs),
    Timeout(DurationLit),
    Recovery,
    /// `logging` or `logging(level = "..")`: the `tracing::Level` constant name.
    Logging(Option<Ident>),
    Metrics,
    ErrorHandler(syn::Path),
}

/// The checked attribute.
pub(crate) struct Config {
    pub(crate) krate: syn::Path,
    pub(crate) topic: Option<TopicArg>,
    pub(crate) group: Option<LitStr>,
    /// Middleware in the order written: first = outermost.
    pub(crate) layers: Vec<Layer>,
    pub(crate) concurrency: Option<usize>,
    pub(crate) ordered: bool,
    pub(crate) ordered_by: Option<OrderKey>,
    pub(crate) max_deliver: Option<u32>,
    pub(crate) backoff: Option<Vec<DurationLit>>,
    pub(crate) start: Option<StartLit>,
    pub(crate) durable: Option<LitStr>,
}

/// A start position, parsed at compile time: `start = "all"`.
#[derive(Clone)]
pub(crate) struct StartLit {
    pub(crate) value: Start,
    pub(crate) span: Span,
}

/// The start positions `bus::config::StartPosition` has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Start {
    All,
    New,
    Last,
    Sequence(u64),
    /// Since the Unix epoch.
    Time(Duration),
}

const VALID_STARTS: &str = "\"all\", \"new\", \"last\", \"sequence:N\" (N >= 1) or \
    \"time:RFC3339\" (e.g. \"time:2024-05-01T12:00:00Z\")";

impl Start {
    /// The start position written `text`, as `StartPosition::from_str` reads it.
    pub(crate) fn parse(text: &str) -> Option<Start> {
        let text = text.trim();
        match text.to_ascii_lowercase().as_str() {
            "all" => return Some(Start::All),
            "new" => return Some(Start::New),
            "last" => return Some(Start::Last),
            _ => {}
        }
        if let Some(n) = text.strip_prefix("sequence:") {
            return n
                .trim()
                .parse()
                .ok()
                .filter(|n| *n >= 1)
                .map(Start::Sequence);
        }
        let time = humantime::parse_rfc3339_weak(text.strip_prefix("time:")?.trim()).ok()?;
        time.duration_since(std::time::UNIX_EPOCH)
            .ok()
            .map(Start::Time)
    }
}

/// How events are ordered by key.
#[derive(Clone)]
pub(crate) enum OrderKey {
    /// A field of the event.
    Field(Ident),
    /// A header.
    Header(LitStr),
}

/// One argument: its key (for duplicate and conflict errors) and its value.
struct Arg {
    key: Ident,
    value: ArgValue,
}

enum ArgValue {
    Topic(TopicArg),
    Group(LitStr),
    Layer(Layer),
    Concurrency(usize),
    Ordered,
    OrderedBy(OrderKey),
    MaxDeliver(u32),
    Backoff(Vec<DurationLit>),
    Start(StartLit),
    Durable(LitStr),
    Crate(syn::Path),
}

impl Config {
    /// Parses and checks the attribute's tokens, recording every mistake in `cx`. Never fails as
    /// a whole: the arguments that parsed are kept.
    pub(crate) fn parse(cx: &Ctxt, tokens: TokenStream) -> Config {
        let mut keys = Keys::new("`#[event_handler]` argument");
        let mut args = Vec::new();
        parse_list(
            cx,
            tokens,
            "expected `,` between `#[event_handler]` arguments",
            |input| {
                let arg = parse_arg(cx, input)?;
                if keys.first(cx, &arg.key) {
                    args.push(arg);
                }
                Ok(())
            },
        );
        Config::from_args(cx, args)
    }

    /// The configuration of arguments given at most once each, checking how they go together.
    fn from_args(cx: &Ctxt, args: Vec<Arg>) -> Config {
        let mut config = Config {
            krate: syn::parse_quote!(::bus),
            topic: None,
            group: None,
            layers: Vec::new(),
            concurrency: None,
            ordered: false,
            ordered_by: None,
            max_deliver: None,
            backoff: None,
            start: None,
            durable: None,
        };
        let mut concurrency_key = None;
        let mut ordered_by_key = None;
        for Arg { key, value } in args {
            match value {
                ArgValue::Topic(t) => config.topic = Some(t),
                ArgValue::Group(g) => config.group = Some(g),
                ArgValue::Layer(layer) => config.layers.push(layer),
                ArgValue::Concurrency(n) => {
                    config.concurrency = Some(n);
                    concurrency_key = Some(key);
                }
                ArgValue::Ordered => config.ordered = true,
                ArgValue::OrderedBy(k) => {
                    if config.ordered_by.is_some() {
                        cx.error_at(
                            key.span(),
                            "order by one key: give `ordered_by` or `ordered_by_header`, not both",
                        );
                    }
                    config.ordered_by = Some(k);
                    ordered_by_key = Some(key);
                }
                ArgValue::MaxDeliver(n) => config.max_deliver = Some(n),
                ArgValue::Backoff(b) => config.backoff = Some(b),
                ArgValue::Start(start) => config.start = Some(start),
                ArgValue::Durable(d) => config.durable = Some(d),
                ArgValue::Crate(p) => config.krate = p,
            }
        }
        if let Some(key) = concurrency_key
            && config.ordered
        {
            cx.error_at(
                key.span(),
                "`ordered` already runs one handler at a time, in order; remove `concurrency` or `ordered`",
            );
        }
        if let Some(key) = ordered_by_key
            && config.ordered
        {
            cx.error_at(
                key.span(),
                "`ordered` already handles every event in order, one at a time; remove `ordered` to order by key with events of different keys running at once",
            );
        }
        config
    }
}

/// Parses a comma-separated list with `item`, one item at a time: an item that fails is
/// recorded in `cx` and parsing resumes after the next top-level comma, so every bad item is
/// reported. Returns whether every item parsed.
fn parse_list(
    cx: &Ctxt,
    tokens: TokenStream,
    missing_comma: &str,
    mut item: impl FnMut(ParseStream<'_>) -> syn::Result<()>,
) -> bool {
    let mut clean = true;
    let mut fail = |e: syn::Error| {
        cx.syn_error(e);
        clean = false;
    };
    let parser = |input: ParseStream<'_>| {
        while !input.is_empty() {
            if let Err(e) = item(input) {
                fail(e);
                skip_past_comma(input)?;
                continue;
            }
            if input.is_empty() {
                break;
            }
            if let Err(e) = input.parse::<Token![,]>() {
                fail(syn::Error::new(e.span(), missing_comma));
                skip_past_comma(input)?;
            }
        }
        Ok(())
    };
    if let Err(e) = parser.parse2(tokens) {
        fail(e);
    }
    clean
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

// ---------------------------------------------------------------------------------------------
// The top-level arguments, one function each.

fn parse_arg(cx: &Ctxt, input: ParseStream<'_>) -> syn::Result<Arg> {
    let lookahead = input.lookahead1();
    if lookahead.peek(kw::topic) {
        topic(input)
    } else if lookahead.peek(kw::group) {
        group(input)
    } else if lookahead.peek(kw::retry) {
        retry(cx, input)
    } else if lookahead.peek(kw::timeout) {
        timeout(input)
    } else if lookahead.peek(kw::recovery) {
        flag::<kw::recovery>(input, ArgValue::Layer(Layer::Recovery))
    } else if lookahead.peek(kw::logging) {
        logging(input)
    } else if lookahead.peek(kw::metrics) {
        flag::<kw::metrics>(input, ArgValue::Layer(Layer::Metrics))
    } else if lookahead.peek(kw::error_handler) {
        error_handler(input)
    } else if lookahead.peek(kw::concurrency) {
        concurrency(input)
    } else if lookahead.peek(kw::ordered_by_header) {
        ordered_by_header(input)
    } else if lookahead.peek(kw::ordered_by) {
        ordered_by(input)
    } else if lookahead.peek(kw::ordered) {
        flag::<kw::ordered>(input, ArgValue::Ordered)
    } else if lookahead.peek(kw::max_deliver) {
        max_deliver(input)
    } else if lookahead.peek(kw::backoff) {
        backoff(cx, input)
    } else if lookahead.peek(kw::start) {
        start(input)
    } else if lookahead.peek(kw::durable) {
        durable(input)
    } else if lookahead.peek(Token![crate]) {
        krate(input)
    } else {
        Err(unknown_arg(input, lookahead))
    }
}

fn unknown_arg(input: ParseStream<'_>, lookahead: Lookahead1<'_>) -> syn::Error {
    match input.call(Ident::parse_any) {
        Ok(ident) => syn::Error::new(
            ident.span(),
            format!("unknown `#[event_handler]` argument `{ident}`; expected one of: {VALID_ARGS}"),
        ),
        Err(_) => syn::Error::new(
            lookahead.error().span(),
            format!("expected an `#[event_handler]` argument, one of: {VALID_ARGS}"),
        ),
    }
}

/// `topic = "literal"` (checked with `bus_names::check_filter`) or `topic = PATH`.
fn topic(input: ParseStream<'_>) -> syn::Result<Arg> {
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
    Ok(Arg {
        key,
        value: ArgValue::Topic(value),
    })
}

/// `group = "risk"`, checked with `bus_names::check_group`.
fn group(input: ParseStream<'_>) -> syn::Result<Arg> {
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
    Ok(Arg {
        key,
        value: ArgValue::Group(lit),
    })
}

/// `retry(...)`; its settings' mistakes are recorded in `cx`.
fn retry(cx: &Ctxt, input: ParseStream<'_>) -> syn::Result<Arg> {
    let key = key::<kw::retry>(input)?;
    let Some((tokens, span)) = delimited(input, Delimiter::Parenthesis) else {
        return Err(syn::Error::new(
            key.span(),
            format!(
                "`retry` needs its settings: `retry(attempts = 3)`; the settings are {VALID_RETRY_ARGS}"
            ),
        ));
    };
    let retry = parse_retry(cx, tokens, span);
    Ok(Arg {
        key,
        value: ArgValue::Layer(Layer::Retry(retry)),
    })
}

/// `timeout = "30s"`, not zero.
fn timeout(input: ParseStream<'_>) -> syn::Result<Arg> {
    let key = key::<kw::timeout>(input)?;
    eq(input, "timeout", "`timeout = \"30s\"`")?;
    let d = duration(input)?;
    if d.value.is_zero() {
        return Err(syn::Error::new(
            d.span,
            "a zero timeout would cancel every handler at once; give the time a handler may take, like \"30s\"",
        ));
    }
    Ok(Arg {
        key,
        value: ArgValue::Layer(Layer::Timeout(d)),
    })
}

/// `logging` or `logging(level = "debug")`.
fn logging(input: ParseStream<'_>) -> syn::Result<Arg> {
    let key = key::<kw::logging>(input)?;
    let level = match delimited(input, Delimiter::Parenthesis) {
        None => None,
        Some((tokens, span)) => Some(parse_logging(tokens, span)?),
    };
    Ok(Arg {
        key,
        value: ArgValue::Layer(Layer::Logging(level)),
    })
}

/// `error_handler = path`.
fn error_handler(input: ParseStream<'_>) -> syn::Result<Arg> {
    let key = key::<kw::error_handler>(input)?;
    eq(input, "error_handler", "`error_handler = my_error_handler`")?;
    Ok(Arg {
        key,
        value: ArgValue::Layer(Layer::ErrorHandler(input.parse()?)),
    })
}

/// `concurrency = 8`, at least 1.
fn concurrency(input: ParseStream<'_>) -> syn::Result<Arg> {
    let key = key::<kw::concurrency>(input)?;
    eq(input, "concurrency", "`concurrency = 8`")?;
    let n = positive::<usize>(
        input,
        "concurrency must be at least 1: it is how many handlers run at once (use `ordered` for one at a time, in order)",
    )?;
    Ok(Arg {
        key,
        value: ArgValue::Concurrency(n),
    })
}

/// `max_deliver = 5`, at least 1.
/// `ordered_by = field`: events with the same value of the event's `field` in order.
fn ordered_by(input: ParseStream<'_>) -> syn::Result<Arg> {
    let key = key::<kw::ordered_by>(input)?;
    eq(
        input,
        "ordered_by",
        "`ordered_by = order_id` (a field of the event)",
    )?;
    let field: Ident = input.call(Ident::parse_any).map_err(|e| {
        syn::Error::new(
            e.span(),
            "expected the name of a field of the event, like `ordered_by = order_id`",
        )
    })?;
    Ok(Arg {
        key,
        value: ArgValue::OrderedBy(OrderKey::Field(field)),
    })
}

/// `ordered_by_header = "name"`: events with the same value of a header in order.
fn ordered_by_header(input: ParseStream<'_>) -> syn::Result<Arg> {
    let key = key::<kw::ordered_by_header>(input)?;
    eq(
        input,
        "ordered_by_header",
        "`ordered_by_header = \"tenant\"`",
    )?;
    let lit: LitStr = input.parse().map_err(|e| {
        syn::Error::new(
            e.span(),
            "expected the header name as a string literal: `ordered_by_header = \"tenant\"`",
        )
    })?;
    if lit.value().is_empty()
        || lit
            .value()
            .bytes()
            .any(|b| !b.is_ascii_graphic() || b == b':')
    {
        return Err(syn::Error::new(
            lit.span(),
            format!(
                "invalid header name {:?}: a header name is printable ASCII, without spaces or `:`",
                lit.value()
            ),
        ));
    }
    Ok(Arg {
        key,
        value: ArgValue::OrderedBy(OrderKey::Header(lit)),
    })
}

fn max_deliver(input: ParseStream<'_>) -> syn::Result<Arg> {
    let key = key::<kw::max_deliver>(input)?;
    eq(input, "max_deliver", "`max_deliver = 5`")?;
    let n = positive::<u32>(
        input,
        "max_deliver must be at least 1: it counts every delivery, the first included",
    )?;
    Ok(Arg {
        key,
        value: ArgValue::MaxDeliver(n),
    })
}

/// `start = "all"`: where a new group starts, checked as `StartPosition` parses it.
fn start(input: ParseStream<'_>) -> syn::Result<Arg> {
    let key = key::<kw::start>(input)?;
    eq(input, "start", "`start = \"all\"`")?;
    let lit: LitStr = input.parse().map_err(|e| {
        syn::Error::new(
            e.span(),
            format!("expected the start position as a string literal: {VALID_STARTS}"),
        )
    })?;
    let Some(value) = Start::parse(&lit.value()) else {
        return Err(syn::Error::new(
            lit.span(),
            format!(
                "invalid start position {:?}: expected {VALID_STARTS}",
                lit.value()
            ),
        ));
    };
    Ok(Arg {
        key,
        value: ArgValue::Start(StartLit {
            value,
            span: lit.span(),
        }),
    })
}

/// `durable = "risk"`: bind to an existing durable consumer, named by the group rule.
fn durable(input: ParseStream<'_>) -> syn::Result<Arg> {
    let key = key::<kw::durable>(input)?;
    eq(input, "durable", "`durable = \"risk\"`")?;
    let lit: LitStr = input.parse().map_err(|e| {
        syn::Error::new(
            e.span(),
            "expected the durable consumer's name as a string literal: `durable = \"risk\"`",
        )
    })?;
    if let Err(e) = bus_names::check_group(&lit.value()) {
        return Err(syn::Error::new(
            lit.span(),
            format!("invalid durable name {:?}: {}", lit.value(), e.reason()),
        ));
    }
    Ok(Arg {
        key,
        value: ArgValue::Durable(lit),
    })
}

/// `backoff = ["1s", "5s", "30s"]`: at least one delay, none zero; each bad delay is recorded in
/// `cx`.
fn backoff(cx: &Ctxt, input: ParseStream<'_>) -> syn::Result<Arg> {
    let key = key::<kw::backoff>(input)?;
    eq(input, "backoff", "`backoff = [\"1s\", \"5s\", \"30s\"]`")?;
    let Some((tokens, span)) = delimited(input, Delimiter::Bracket) else {
        return Err(input.error(
            "expected a list of delays in brackets: `backoff = [\"1s\", \"5s\", \"30s\"]`",
        ));
    };
    let lits = Punctuated::<LitStr, Token![,]>::parse_terminated.parse2(tokens)?;
    if lits.is_empty() {
        return Err(syn::Error::new(
            span,
            "`backoff` needs at least one delay, like `backoff = [\"1s\", \"5s\", \"30s\"]` (the last one repeats)",
        ));
    }
    let mut delays = Vec::new();
    for lit in &lits {
        match parse_duration(lit) {
            Ok(d) if d.value.is_zero() => cx.error_at(
                d.span,
                "a zero redelivery delay makes a hot redelivery loop; give a delay like \"1s\"",
            ),
            Ok(d) => delays.push(d),
            Err(e) => cx.syn_error(e),
        }
    }
    Ok(Arg {
        key,
        value: ArgValue::Backoff(delays),
    })
}

/// `crate = "my_bus"`: the path of the runtime crate.
fn krate(input: ParseStream<'_>) -> syn::Result<Arg> {
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
    Ok(Arg {
        key,
        value: ArgValue::Crate(path),
    })
}

/// A flag (an argument without a value), rejecting `flag = ..` and `flag(..)`.
fn flag<K: syn::parse::Parse>(input: ParseStream<'_>, value: ArgValue) -> syn::Result<Arg> {
    let key = key::<K>(input)?;
    if input.peek(Token![=]) || input.peek(syn::token::Paren) {
        return Err(syn::Error::new(
            key.span(),
            format!("`{key}` takes no value: write `{key}` alone, or leave it out"),
        ));
    }
    Ok(Arg { key, value })
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

// ---------------------------------------------------------------------------------------------
// `retry(...)`, one function per setting.

/// One `retry` setting.
enum RetrySetting {
    Attempts(u32),
    InitialDelay(DurationLit),
    MaxDelay(DurationLit),
    Multiplier(f64),
    Jitter(f64),
}

/// Parses the inside of `retry(...)` (spanning `span`), recording every bad setting in `cx`.
fn parse_retry(cx: &Ctxt, tokens: TokenStream, span: Span) -> RetryArgs {
    let mut keys = Keys::new("`retry` setting");
    let mut attempts = None;
    let mut retry = RetryArgs {
        attempts: 1,
        initial_delay: None,
        max_delay: None,
        multiplier: None,
        jitter: None,
    };
    let clean = parse_list(
        cx,
        tokens,
        "expected `,` between `retry` settings",
        |input| {
            let (key, setting) = retry_setting(input)?;
            if keys.first(cx, &key) {
                match setting {
                    RetrySetting::Attempts(n) => attempts = Some(n),
                    RetrySetting::InitialDelay(d) => retry.initial_delay = Some(d),
                    RetrySetting::MaxDelay(d) => retry.max_delay = Some(d),
                    RetrySetting::Multiplier(m) => retry.multiplier = Some(m),
                    RetrySetting::Jitter(j) => retry.jitter = Some(j),
                }
            }
            Ok(())
        },
    );
    if let (Some(init), Some(max)) = (&retry.initial_delay, &retry.max_delay)
        && max.value < init.value
    {
        cx.error_at(
            max.span,
            "max_delay is below initial_delay; raise max_delay or lower initial_delay",
        );
    }
    match attempts {
        Some(n) => retry.attempts = n,
        // A setting that did not parse may have been `attempts`: its error says enough.
        None if clean => cx.error_at(
            span,
            "`retry` needs `attempts = N`, the most runs in all (the first included): `retry(attempts = 3)`",
        ),
        None => {}
    }
    retry
}

fn retry_setting(input: ParseStream<'_>) -> syn::Result<(Ident, RetrySetting)> {
    let lookahead = input.lookahead1();
    let key = input.fork().call(Ident::parse_any)?;
    let setting = if lookahead.peek(kw::attempts) {
        attempts(input)?
    } else if lookahead.peek(kw::initial_delay) {
        input.parse::<kw::initial_delay>()?;
        eq(input, "initial_delay", "`initial_delay = \"100ms\"`")?;
        RetrySetting::InitialDelay(duration(input)?)
    } else if lookahead.peek(kw::max_delay) {
        input.parse::<kw::max_delay>()?;
        eq(input, "max_delay", "`max_delay = \"10s\"`")?;
        RetrySetting::MaxDelay(duration(input)?)
    } else if lookahead.peek(kw::multiplier) {
        multiplier(input)?
    } else if lookahead.peek(kw::jitter) {
        jitter(input)?
    } else {
        return Err(syn::Error::new(
            key.span(),
            format!("unknown `retry` setting `{key}`; expected one of: {VALID_RETRY_ARGS}"),
        ));
    };
    Ok((key, setting))
}

/// `attempts = 3`, at least 1.
fn attempts(input: ParseStream<'_>) -> syn::Result<RetrySetting> {
    input.parse::<kw::attempts>()?;
    eq(input, "attempts", "`attempts = 3`")?;
    let n = positive::<u32>(
        input,
        "retry attempts must be at least 1 (the first run counts): `attempts = 3` runs the handler up to three times",
    )?;
    Ok(RetrySetting::Attempts(n))
}

/// `multiplier = 2.0`, at least 1.0.
fn multiplier(input: ParseStream<'_>) -> syn::Result<RetrySetting> {
    input.parse::<kw::multiplier>()?;
    eq(input, "multiplier", "`multiplier = 2.0`")?;
    let (m, span) = number(input, "multiplier")?;
    if !(m >= 1.0 && m.is_finite()) {
        return Err(syn::Error::new(
            span,
            "the retry multiplier must be at least 1.0 (delays never shrink), like `2.0`",
        ));
    }
    Ok(RetrySetting::Multiplier(m))
}

/// `jitter = 0.2`, between 0.0 and 1.0.
fn jitter(input: ParseStream<'_>) -> syn::Result<RetrySetting> {
    input.parse::<kw::jitter>()?;
    eq(input, "jitter", "`jitter = 0.2`")?;
    let (j, span) = number(input, "jitter")?;
    if !(0.0..=1.0).contains(&j) {
        return Err(syn::Error::new(
            span,
            "jitter is a fraction of each delay between 0.0 and 1.0, like `0.2` for ±20%",
        ));
    }
    Ok(RetrySetting::Jitter(j))
}

// ---------------------------------------------------------------------------------------------
// Values.

/// Parses a custom keyword and returns it as an identifier with its span.
fn key<K: syn::parse::Parse>(input: ParseStream<'_>) -> syn::Result<Ident> {
    let ident = input.fork().call(Ident::parse_any)?;
    input.parse::<K>()?;
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

fn parse_duration(lit: &LitStr) -> syn::Result<DurationLit> {
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
