//! Unit tests of the expansion. They parse what `#[event_handler]` generates as a `syn::File`
//! and look at its items and calls, not at its text, and read the errors from the
//! `compile_error!`s it emits.

use std::time::Duration;

use proc_macro2::TokenStream;
use syn::punctuated::Punctuated;
// `VisitMut` (on a clone) rather than `Visit`: syn's `visit` feature is not enabled in this
// workspace, and enabling it for these tests would rebuild syn and every proc-macro using it.
use syn::visit_mut::{self, VisitMut};
use syn::{
    Expr, ExprCall, ExprMethodCall, File, ImplItem, ImplItemFn, Item, ItemConst, ItemImpl, Lit,
    LitStr, Macro, Token,
};

use crate::event_handler::expand;

// ---------------------------------------------------------------------------------------------
// Helpers.

const OK_FN: &str = "async fn on_price(event: Price) -> Result<(), HandlerError> { Ok(()) }";

/// The expansion of `#[event_handler(attr)] item`, parsed.
fn expand_tokens(attr: TokenStream, item: &str) -> File {
    let out = expand(attr, item.parse().expect("item tokens"));
    syn::parse2(out.clone()).unwrap_or_else(|e| panic!("the expansion is not a file: {e}\n{out}"))
}

fn expand_str(attr: &str, item: &str) -> File {
    expand_tokens(attr.parse().expect("attribute tokens"), item)
}

/// The messages of the expansion's `compile_error!`s, in order.
fn errors(file: &File) -> Vec<String> {
    file.items
        .iter()
        .filter_map(|item| match item {
            Item::Macro(m) if last_segment(&m.mac.path) == "compile_error" => Some(
                m.mac
                    .parse_body::<LitStr>()
                    .expect("a compile_error! message")
                    .value(),
            ),
            _ => None,
        })
        .collect()
}

/// The expansion of a handler that must expand without errors.
fn expand_ok(attr: &str, item: &str) -> File {
    let file = expand_str(attr, item);
    let errs = errors(&file);
    assert!(errs.is_empty(), "#[event_handler({attr})]: {errs:#?}");
    file
}

fn last_segment(path: &syn::Path) -> String {
    path.segments
        .last()
        .map(|s| s.ident.to_string())
        .unwrap_or_default()
}

/// `a::b::C`, with a leading `::` when written, without generic arguments.
fn path_string(path: &syn::Path) -> String {
    let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
    let lead = if path.leading_colon.is_some() {
        "::"
    } else {
        ""
    };
    format!("{lead}{}", segments.join("::"))
}

fn impls(file: &File) -> impl Iterator<Item = &ItemImpl> {
    file.items.iter().filter_map(|item| match item {
        Item::Impl(i) => Some(i),
        _ => None,
    })
}

/// The impl of the trait whose path ends in `name`.
fn trait_impl<'a>(file: &'a File, name: &str) -> Option<&'a ItemImpl> {
    impls(file).find(|i| {
        i.trait_
            .as_ref()
            .is_some_and(|(_, path, _)| last_segment(path) == name)
    })
}

/// The function `name` of an inherent impl.
fn inherent_fn<'a>(file: &'a File, name: &str) -> Option<&'a ImplItemFn> {
    impls(file)
        .filter(|i| i.trait_.is_none())
        .flat_map(|i| &i.items)
        .find_map(|item| match item {
            ImplItem::Fn(f) if f.sig.ident == name => Some(f),
            _ => None,
        })
}

/// The `const _: () = { .. };` items (topic checks).
fn topic_checks(file: &File) -> Vec<&ItemConst> {
    file.items
        .iter()
        .filter_map(|item| match item {
            Item::Const(c) if c.ident == "_" => Some(c),
            _ => None,
        })
        .collect()
}

/// Every call and method call in the expansion, in the order written (a receiver before its
/// method, a callee before its arguments), including inside `vec![..]`.
#[derive(Default)]
struct Calls {
    calls: Vec<ExprCall>,
    method_calls: Vec<ExprMethodCall>,
}

impl Calls {
    fn of(file: &File) -> Calls {
        let mut calls = Calls::default();
        calls.visit_file_mut(&mut file.clone());
        calls
    }

    /// The calls of a function whose path ends in `name`.
    fn named(&self, name: &str) -> Vec<&ExprCall> {
        self.calls
            .iter()
            .filter(|c| matches!(&*c.func, Expr::Path(p) if last_segment(&p.path) == name))
            .collect()
    }

    /// The calls of the function at `path` (as [`path_string`] writes it).
    fn at(&self, path: &str) -> Vec<&ExprCall> {
        self.calls
            .iter()
            .filter(|c| matches!(&*c.func, Expr::Path(p) if path_string(&p.path) == path))
            .collect()
    }

    /// The one call of a function whose path ends in `name`.
    fn one(&self, name: &str) -> &ExprCall {
        let found = self.named(name);
        assert_eq!(found.len(), 1, "calls of `{name}`: {}", found.len());
        found[0]
    }

    /// The builder chain: the method calls that end in `.handler(..)`, in the order written.
    fn builder_chain(&self) -> Vec<&ExprMethodCall> {
        let handlers: Vec<_> = self
            .method_calls
            .iter()
            .filter(|m| m.method == "handler")
            .collect();
        assert_eq!(handlers.len(), 1, "one `.handler(..)` call");
        let mut chain = vec![handlers[0]];
        while let Expr::MethodCall(m) = &*chain.last().unwrap().receiver {
            chain.push(m);
        }
        chain.reverse();
        chain
    }
}

impl VisitMut for Calls {
    fn visit_expr_call_mut(&mut self, call: &mut ExprCall) {
        self.calls.push(call.clone());
        visit_mut::visit_expr_call_mut(self, call);
    }

    fn visit_expr_method_call_mut(&mut self, call: &mut ExprMethodCall) {
        self.visit_expr_mut(&mut call.receiver);
        self.method_calls.push(call.clone());
        for arg in &mut call.args {
            self.visit_expr_mut(arg);
        }
    }

    fn visit_macro_mut(&mut self, mac: &mut Macro) {
        if last_segment(&mac.path) == "vec" {
            let mut items = mac
                .parse_body_with(Punctuated::<Expr, Token![,]>::parse_terminated)
                .expect("vec! items");
            for item in &mut items {
                self.visit_expr_mut(item);
            }
        }
    }
}

fn method_names(chain: &[&ExprMethodCall]) -> Vec<String> {
    chain.iter().map(|m| m.method.to_string()).collect()
}

/// The path of the value an expression starts from: `a::B` for `a::B`, `a::B::new(..)` and
/// `a::B::new(..).x(..)`.
fn root_path(expr: &Expr) -> String {
    match expr {
        Expr::Path(p) => path_string(&p.path),
        Expr::Call(c) => root_path(&c.func),
        Expr::MethodCall(m) => root_path(&m.receiver),
        other => panic!("not a path, call or method call: {other:?}"),
    }
}

/// The middleware of each `.layer(..)` of the chain, by path.
fn layers(chain: &[&ExprMethodCall]) -> Vec<String> {
    chain
        .iter()
        .filter(|m| m.method == "layer")
        .map(|m| root_path(&m.args[0]))
        .collect()
}

fn int(expr: &Expr) -> u64 {
    match expr {
        Expr::Lit(syn::ExprLit {
            lit: Lit::Int(i), ..
        }) => i.base10_parse().expect("an integer"),
        other => panic!("not an integer literal: {other:?}"),
    }
}

fn string(expr: &Expr) -> String {
    match expr {
        Expr::Lit(syn::ExprLit {
            lit: Lit::Str(s), ..
        }) => s.value(),
        other => panic!("not a string literal: {other:?}"),
    }
}

/// The type arguments of a call's turbofish, as written.
fn turbofish(call: &ExprCall) -> Vec<String> {
    let Expr::Path(p) = &*call.func else {
        panic!("not a path call")
    };
    let Some(seg) = p.path.segments.last() else {
        return Vec::new();
    };
    match &seg.arguments {
        syn::PathArguments::AngleBracketed(a) => a
            .args
            .iter()
            .map(|arg| quote::ToTokens::to_token_stream(arg).to_string())
            .collect(),
        _ => Vec::new(),
    }
}

/// The `Duration::new(secs, nanos)` values of the expansion, in order.
fn durations(calls: &Calls) -> Vec<Duration> {
    calls
        .at("::core::time::Duration::new")
        .into_iter()
        .map(|c| Duration::new(int(&c.args[0]), int(&c.args[1]) as u32))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// What is generated.

#[test]
fn generates_struct_name_handle_and_subscription() {
    let file = expand_ok("", OK_FN);
    let Some(Item::Struct(s)) = file.items.first() else {
        panic!("the first item is the struct")
    };
    assert_eq!(s.ident, "on_price");
    assert!(matches!(s.fields, syn::Fields::Unit), "a unit struct");

    let name = impls(&file)
        .filter(|i| i.trait_.is_none())
        .flat_map(|i| &i.items)
        .find_map(|item| match item {
            ImplItem::Const(c) if c.ident == "NAME" => Some(string(&c.expr)),
            _ => None,
        });
    assert_eq!(name.as_deref(), Some("on_price"));
    let handle = inherent_fn(&file, "handle").expect("on_price::handle");
    assert!(handle.sig.asyncness.is_some());

    let sub = trait_impl(&file, "IntoSubscription").expect("impl IntoSubscription");
    let (_, path, _) = sub.trait_.as_ref().unwrap();
    assert_eq!(path_string(path), "::bus::IntoSubscription");
    assert!(inherent_fn(&file, "with_state").is_none());
    assert!(topic_checks(&file).is_empty());

    let calls = Calls::of(&file);
    let builder = calls.one("subscription");
    assert_eq!(turbofish(builder), ["Price"]);
    assert_eq!(string(&builder.args[0]), "on_price");
    assert_eq!(method_names(&calls.builder_chain()), ["handler"]);
}

#[test]
fn settings_in_written_order() {
    let file = expand_ok(
        "group = \"risk\", metrics, retry(attempts = 2, initial_delay = \"100ms\"), recovery, \
         logging(level = \"debug\"), concurrency = 4, max_deliver = 5, backoff = [\"1s\"]",
        OK_FN,
    );
    let calls = Calls::of(&file);
    let chain = calls.builder_chain();
    assert_eq!(
        method_names(&chain),
        [
            "group",
            "layer",
            "layer",
            "layer",
            "layer",
            "concurrency",
            "max_deliver",
            "backoff",
            "handler"
        ]
    );
    assert_eq!(string(&chain[0].args[0]), "risk");
    assert_eq!(
        layers(&chain),
        [
            "::bus::middleware::Metrics",
            "::bus::middleware::Retry::new",
            "::bus::middleware::Recovery",
            "::bus::middleware::Logging::level",
        ]
    );
    let retry = calls.at("::bus::middleware::Retry::new");
    assert_eq!(int(&retry[0].args[0]), 2, "Retry::new(2)");
    assert_eq!(int(&chain[5].args[0]), 4);
    assert_eq!(int(&chain[6].args[0]), 5);

    let ordered = expand_ok("ordered, timeout = \"1s\"", OK_FN);
    let ordered = Calls::of(&ordered);
    let chain = ordered.builder_chain();
    assert_eq!(method_names(&chain), ["layer", "ordered", "handler"]);
    assert_eq!(layers(&chain), ["::bus::middleware::Timeout::new"]);
}

#[test]
fn state_gives_with_state_and_arguments_in_order() {
    let file = expand_ok(
        "",
        "async fn h(e: Price, s: State<App>, d: Delivery) -> Result<(), HandlerError> { Ok(()) }",
    );
    assert!(inherent_fn(&file, "with_state").is_some());
    assert!(trait_impl(&file, "IntoSubscription").is_none());
    let calls = Calls::of(&file);
    let handle = calls.one("handle");
    let args: Vec<String> = handle.args.iter().map(root_path).collect();
    assert_eq!(args, ["__bus_event", "__bus_state", "__bus_delivery"]);
    assert_eq!(method_names(&calls.builder_chain()), ["handler"]);
}

#[test]
fn topic_literal_and_path() {
    let file = expand_ok("topic = \"cqc.events.v1.price.eu\"", OK_FN);
    let calls = Calls::of(&file);
    let builder = calls.one("subscription_on");
    assert_eq!(turbofish(builder), ["Price"]);
    assert_eq!(string(&builder.args[1]), "cqc.events.v1.price.eu");
    let [check] = topic_checks(&file)[..] else {
        panic!("one topic check")
    };
    let check = Calls::of(&File {
        shebang: None,
        attrs: Vec::new(),
        items: vec![Item::Const(check.clone())],
    });
    assert_eq!(
        string(&check.one("filter_is_valid").args[0]),
        "cqc.events.v1.price.eu"
    );
    let within = check.one("filter_within");
    assert_eq!(string(&within.args[0]), "cqc.events.v1.price.eu");
    assert_eq!(turbofish(check.one("topic_of")), ["Price"]);

    let file = expand_ok("topic = EU_PRICES", OK_FN);
    let calls = Calls::of(&file);
    let builder = calls.one("subscription_on");
    let subject = calls.one("subject_of");
    assert_eq!(turbofish(subject), ["Price", "_"]);
    assert_eq!(root_path(&subject.args[0]), "EU_PRICES");
    assert!(matches!(&builder.args[1], Expr::Call(c) if *c == *subject));
    assert!(topic_checks(&file).is_empty());
}

#[test]
fn renamed_crate() {
    let file = expand_ok("crate = \"my_bus\", metrics", OK_FN);
    let sub = trait_impl(&file, "IntoSubscription").expect("impl IntoSubscription");
    assert_eq!(
        path_string(&sub.trait_.as_ref().unwrap().1),
        "my_bus::IntoSubscription"
    );
    let calls = Calls::of(&file);
    let Expr::Path(builder) = &*calls.one("subscription").func else {
        panic!()
    };
    assert_eq!(
        path_string(&builder.path),
        "my_bus::__private::subscription"
    );
    assert_eq!(
        layers(&calls.builder_chain()),
        ["my_bus::middleware::Metrics"]
    );
}

#[test]
fn cfg_applies_to_every_generated_item() {
    let file = expand_ok(
        "topic = \"cqc.events.v1.price.eu\"",
        "#[cfg(feature = \"x\")] async fn h(e: Price) -> Result<(), E> { Ok(()) }",
    );
    let cfg: syn::Attribute = syn::parse_quote!(#[cfg(feature = "x")]);
    // The struct, its impl (with the function), the subscription impl and the topic check.
    assert_eq!(file.items.len(), 4);
    for item in &file.items {
        let attrs = match item {
            Item::Struct(s) => &s.attrs,
            Item::Impl(i) => &i.attrs,
            Item::Const(c) => &c.attrs,
            other => panic!("unexpected item {other:?}"),
        };
        assert!(attrs.contains(&cfg), "{item:?}");
    }
    assert!(inherent_fn(&file, "handle").unwrap().attrs.contains(&cfg));
}

#[test]
fn durations_parsed_at_compile_time() {
    let file = expand_ok(
        "timeout = \"250ms\", backoff = [\"1s\", \"2m\"], retry(attempts = 3, max_delay = \"1h\")",
        OK_FN,
    );
    assert_eq!(
        durations(&Calls::of(&file)),
        [
            Duration::from_millis(250),
            Duration::from_secs(3600),
            Duration::from_secs(1),
            Duration::from_secs(120),
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Errors.

#[test]
fn all_errors_at_once_and_fn_kept() {
    let file = expand_str(
        "retry(attempts = 0), concurrency = 0, timeout = \"5 parsecs\", bogus, topic = \"a..b\", group = \"a.b\"",
        "fn on_price(event: Price) -> Result<(), HandlerError> { Ok(()) }",
    );
    let errs = errors(&file);
    assert_eq!(errs.len(), 7, "{errs:#?}");
    assert!(matches!(file.items.first(), Some(Item::Fn(f)) if f.sig.ident == "on_price"));
    let has = |want: &str| errs.iter().any(|e| e.contains(want));
    assert!(
        has("unknown `#[event_handler]` argument `bogus`"),
        "{errs:#?}"
    );
    assert!(has("needs an `async fn`"), "{errs:#?}");
    let topic = bus_names::check_filter("a..b").unwrap_err().reason();
    assert!(
        has(&format!("invalid topic \"a..b\": {topic}")),
        "{errs:#?}"
    );
    let group = bus_names::check_group("a.b").unwrap_err().reason();
    assert!(has(&format!("invalid group \"a.b\": {group}")), "{errs:#?}");
}

#[test]
fn duplicates_and_conflicts() {
    let errs = errors(&expand_str(
        "metrics, metrics, ordered, concurrency = 2",
        OK_FN,
    ));
    assert_eq!(
        errs,
        [
            "duplicate `#[event_handler]` argument `metrics`: it is already given; give it once",
            "`ordered` already runs one handler at a time, in order; remove `concurrency` or `ordered`",
        ]
    );
    let errs = errors(&expand_str(
        "retry(attempts = 2, jitter = 0.1, attempts = 3), timeout = \"1s\", timeout = \"2s\"",
        OK_FN,
    ));
    assert_eq!(
        errs,
        [
            "duplicate `retry` setting `attempts`: it is already given; give it once",
            "duplicate `#[event_handler]` argument `timeout`: it is already given; give it once",
        ]
    );
}

#[test]
fn retry_errors() {
    for (attr, want) in [
        ("retry", "`retry` needs its settings"),
        ("retry()", "`retry` needs `attempts = N`"),
        ("retry(jitter = 0.5)", "`retry` needs `attempts = N`"),
        // The bad setting is reported, not also the missing `attempts`.
        ("retry(attempts = 0)", "retry attempts must be at least 1"),
        ("retry(attemps = 3)", "unknown `retry` setting `attemps`"),
        (
            "retry(attempts = 2, initial_delay = \"1s\", max_delay = \"1ms\")",
            "max_delay is below initial_delay",
        ),
        (
            "retry(attempts = 2, multiplier = 0.5)",
            "multiplier must be at least 1.0",
        ),
        (
            "retry(attempts = 2 jitter = 0.5)",
            "expected `,` between `retry` settings",
        ),
    ] {
        let errs = errors(&expand_str(attr, OK_FN));
        assert!(
            errs.len() == 1 && errs[0].contains(want),
            "{attr}: {errs:#?}"
        );
    }
}

#[test]
fn argument_errors() {
    for (attr, want) in [
        (
            "metrics ordered",
            "expected `,` between `#[event_handler]` arguments",
        ),
        ("\"x\"", "expected an `#[event_handler]` argument"),
        ("recovery = true", "`recovery` takes no value"),
        ("timeout = \"0s\"", "a zero timeout"),
        ("backoff = []", "`backoff` needs at least one delay"),
        ("logging(level = \"loud\")", "unknown log level \"loud\""),
        (
            "crate = \"not a path\"",
            "`crate` must name the runtime crate",
        ),
        ("topic = 3", "expected a topic"),
    ] {
        let errs = errors(&expand_str(attr, OK_FN));
        assert!(
            errs.len() == 1 && errs[0].contains(want),
            "{attr}: {errs:#?}"
        );
    }
    let errs = errors(&expand_str("backoff = [\"0s\", \"x\"]", OK_FN));
    assert_eq!(errs.len(), 2, "{errs:#?}");
}

#[test]
fn signature_errors() {
    for (item, want) in [
        ("async fn h() -> Result<(), E> { Ok(()) }", "first argument"),
        ("async fn h(e: Price) { }", "must return"),
        (
            "async fn h(d: Delivery) -> Result<(), E> { Ok(()) }",
            "must be the event",
        ),
        (
            "async fn h(e: &Price) -> Result<(), E> { Ok(()) }",
            "by value",
        ),
        ("async fn h<T>(e: T) -> Result<(), E> { Ok(()) }", "generic"),
        (
            "async fn h(e: Price, x: u32) -> Result<(), E> { Ok(()) }",
            "unexpected argument",
        ),
        (
            "async fn h(e: Price, d: Delivery, d2: Delivery) -> Result<(), E> { Ok(()) }",
            "already taken",
        ),
        ("struct S;", "goes on an `async fn`"),
    ] {
        let errs = errors(&expand_str("", item));
        assert!(
            errs.len() == 1 && errs[0].contains(want),
            "{item}: {errs:#?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The naming rules, from the table every entry point is tested against.

#[test]
fn topic_literals_follow_the_bus_names_table() {
    for &(subject, _, valid_filter) in bus_names::cases::SUBJECTS {
        // `{:?}` writes any string as a Rust literal (`"a\tb"`, `"a\u{7f}b"`), so none is skipped.
        let errs = errors(&expand_str(&format!("topic = {subject:?}"), OK_FN));
        let invalid = format!("invalid topic {subject:?}: ");
        if valid_filter {
            assert!(errs.is_empty(), "{subject:?}: {errs:#?}");
        } else {
            let reason = bus_names::check_filter(subject).unwrap_err().reason();
            assert_eq!(errs, [format!("{invalid}{reason}")], "{subject:?}");
        }
    }
}

#[test]
fn groups_follow_the_bus_names_table() {
    for &(group, valid) in bus_names::cases::GROUPS {
        let errs = errors(&expand_str(&format!("group = {group:?}"), OK_FN));
        if valid {
            assert!(errs.is_empty(), "{group:?}: {errs:#?}");
        } else {
            let reason = bus_names::check_group(group).unwrap_err().reason();
            assert_eq!(
                errs,
                [format!("invalid group {group:?}: {reason}")],
                "{group:?}"
            );
        }
    }
}

#[test]
fn start_and_durable_become_builder_calls() {
    let file = expand_ok("start = \"all\", durable = \"risk\"", OK_FN);
    let calls = Calls::of(&file);
    let chain = calls.builder_chain();
    assert_eq!(method_names(&chain), ["start", "durable", "handler"]);
    assert_eq!(string(&chain[1].args[0]), "risk");
    let start = &chain[0].args[0];
    assert_eq!(
        quote::quote!(#start).to_string().replace(' ', ""),
        "::bus::config::StartPosition::All"
    );
    let file = expand_ok("start = \"sequence:42\"", OK_FN);
    let calls = Calls::of(&file);
    let chain = calls.builder_chain();
    let start = &chain[0].args[0];
    assert_eq!(
        quote::quote!(#start).to_string().replace(' ', ""),
        "::bus::config::StartPosition::Sequence(42u64)"
    );
    expand_ok("start = \"time:2024-05-01T12:00:00Z\"", OK_FN);
}

#[test]
fn bad_start_and_durable_are_errors_that_list_what_is_valid() {
    let errs = errors(&expand_str("start = \"tomorrow\"", OK_FN));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].contains("invalid start position") && errs[0].contains("sequence:N"),
        "{errs:?}"
    );
    let errs = errors(&expand_str("start = \"sequence:0\"", OK_FN));
    assert!(errs[0].contains("invalid start position"), "{errs:?}");
    let errs = errors(&expand_str("durable = \"risk.v2\"", OK_FN));
    assert!(errs[0].contains("invalid durable name"), "{errs:?}");
}
