//! `#[event_handler]`: checks the attribute and the function, then generates the handler value.
//!
//! For
//!
//! ```text
//! #[event_handler(group = "risk", timeout = "30s")]
//! async fn on_price(event: PriceUpdated, state: State<App>) -> Result<(), HandlerError> { .. }
//! ```
//!
//! it generates a unit struct `on_price` (so the name is a value), whose associated function
//! `on_price::handle` is the original function, and either `impl IntoSubscription for on_price`
//! (no state) or `on_price.with_state(state) -> Subscription`. The subscription is built with the
//! public `SubscriptionBuilder`, started by `bus::__private::subscription::<E>(NAME)` (or
//! `subscription_on`). Type-dependent checks (the event type, the return type, a typed topic) go
//! through `bus::__private` traits that carry `#[diagnostic::on_unimplemented]` messages, spanned
//! at the user's tokens.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{Attribute, Ident, ItemFn, Type};

use crate::attr::{Config, DurationLit, Layer, OrderKey, RetryArgs, Start, StartLit, TopicArg};
use crate::ctxt::Ctxt;
use crate::signature::{Extra, HandlerSig};

/// Expands `#[event_handler(attr)] item`. On any error the function is emitted unchanged, with
/// every error next to it, so the rest of the crate (and the IDE) keeps working.
pub(crate) fn expand(attr: TokenStream, item: TokenStream) -> TokenStream {
    let f: ItemFn = match syn::parse2(item.clone()) {
        Ok(f) => f,
        Err(_) => {
            let mut out = item;
            out.extend(
                syn::Error::new(
                    Span::call_site(),
                    "`#[event_handler]` goes on an `async fn` that takes an event: \
                     `async fn name(event: MyEvent) -> Result<(), bus::HandlerError>`",
                )
                .into_compile_error(),
            );
            return out;
        }
    };
    expand_fn(attr, &f).unwrap_or_else(|e| {
        let mut out = f.to_token_stream();
        out.extend(e.into_compile_error());
        out
    })
}

/// Checks everything, then generates; every mistake at once as one combined error.
fn expand_fn(attr: TokenStream, f: &ItemFn) -> syn::Result<TokenStream> {
    let cx = Ctxt::new();
    let config = Config::parse(&cx, attr);
    let sig = HandlerSig::from_fn(&cx, f);
    cx.check()?;
    // `from_fn` gives `None` only after recording an error, so this is a safety net.
    let sig = sig.ok_or_else(|| {
        syn::Error::new(
            Span::call_site(),
            "`#[event_handler]` could not read this function",
        )
    })?;
    Ok(generate(&config, &sig, f))
}

/// The expansion: the unit struct (with the function's docs and `cfg`s), its `NAME` and
/// `handle`, the subscription, and the check of a topic literal.
fn generate(config: &Config, sig: &HandlerSig<'_>, f: &ItemFn) -> TokenStream {
    let vis = &f.vis;
    let ident = &f.sig.ident;
    let name = ident.unraw().to_string();
    let asyncness = &f.sig.asyncness;
    let inputs = &f.sig.inputs;
    let output = &f.sig.output;
    let block = &f.block;
    let fn_attrs = &f.attrs;
    let docs = attrs_named(&f.attrs, "doc");
    let cfgs = attrs_named(&f.attrs, "cfg");

    let subscribe_doc = subscribe_doc(&name, sig.state_ty.is_some());
    let handle_doc = docs.is_empty().then(
        || quote!(#[doc = "The handler's function, as written (call it directly in unit tests)."]),
    );
    let subscription = subscription_item_tokens(config, sig, f, &cfgs);
    let topic_check = topic_check_tokens(config, sig.event_ty, &cfgs);

    quote! {
        #(#docs)*
        #[doc = #subscribe_doc]
        #(#cfgs)*
        #[allow(non_camel_case_types)]
        #[derive(Clone, Copy, Debug)]
        #vis struct #ident;

        #(#cfgs)*
        impl #ident {
            /// The handler's name. The default group is `{consumer_name}-{NAME}`, so keep it stable.
            #vis const NAME: &'static str = #name;

            #handle_doc
            #(#fn_attrs)*
            #vis #asyncness fn handle(#inputs) #output #block
        }

        #subscription

        #topic_check
    }
}

fn attrs_named<'a>(attrs: &'a [Attribute], name: &str) -> Vec<&'a Attribute> {
    attrs.iter().filter(|a| a.path().is_ident(name)).collect()
}

/// The doc line added to the struct: how to subscribe it.
fn subscribe_doc(name: &str, stateful: bool) -> String {
    let subscribe = if stateful {
        format!("{name}.with_state(state)")
    } else {
        name.to_owned()
    };
    format!(
        "\n\nAn event handler made by `#[event_handler]`: subscribe it with \
         `bus.subscribe({subscribe})`; call the function itself with `{name}::handle(..)`."
    )
}

/// `impl IntoSubscription for name` (no state), or `name.with_state(state)`.
fn subscription_item_tokens(
    config: &Config,
    sig: &HandlerSig<'_>,
    f: &ItemFn,
    cfgs: &[&Attribute],
) -> TokenStream {
    let krate = &config.krate;
    let vis = &f.vis;
    let ident = &f.sig.ident;
    let build = subscription_tokens(config, sig, ident);
    match sig.state_ty {
        None => quote! {
            #(#cfgs)*
            impl #krate::IntoSubscription for #ident {
                fn into_subscription(self) -> #krate::Subscription {
                    #build
                }
            }
        },
        Some(state_ty) => {
            let state_var = format_ident!("__bus_state");
            quote! {
                #(#cfgs)*
                impl #ident {
                    /// This handler's subscription, with the state it gets on every delivery. Give
                    /// several handlers clones of one `State` to share it.
                    #vis fn with_state(
                        self,
                        state: impl ::core::convert::Into<#krate::State<#state_ty>>,
                    ) -> #krate::Subscription {
                        let #state_var: #krate::State<#state_ty> = ::core::convert::Into::into(state);
                        #build
                    }
                }
            }
        }
    }
}

/// The body that builds the subscription: the builder on the topic, the settings in the order
/// written, then the handler.
///
/// The settings and `.handler(..)` are called in a function generic over the event type: on a
/// concrete type that is not an `Event`, `.handler(..)` and every setting would fail as well
/// (their impl needs `E: FromMessage`), a cascade under the real error; in the generic function
/// they cannot. The helper's `HandlerEvent` bound is the same unmet bound as
/// `subscription::<E>`'s at the same span (the event type in both turbofishes), which rustc
/// reports once. The call is spanned at the handler's name, so a handler future that is not
/// `Send` is reported there.
fn subscription_tokens(config: &Config, sig: &HandlerSig<'_>, ident: &Ident) -> TokenStream {
    let krate = &config.krate;
    let event_ty = sig.event_ty;
    let builder = builder_tokens(config, event_ty, &ident.unraw().to_string());
    let settings = settings_tokens(config);
    let order_key = order_key_tokens(config, event_ty);
    let handler = handler_closure_tokens(krate, sig, ident);
    let call = quote_spanned! {ident.span()=>
        __bus_subscription::<#event_ty, _, _>(__bus_builder, #handler)
    };
    quote! {
        fn __bus_subscription<__BusEvent, __BusHandler, __BusArgs>(
            builder: #krate::SubscriptionBuilder<__BusEvent>,
            handler: __BusHandler,
        ) -> #krate::Subscription
        where
            __BusEvent: #krate::__private::HandlerEvent,
            __BusHandler: #krate::HandlerFn<__BusEvent, __BusArgs>,
            __BusArgs: 'static,
        {
            builder #settings .handler(handler)
        }
        let __bus_builder = #builder #order_key;
        #call
    }
}

/// The builder on the event's topic, or on the `topic` argument. The event type keeps its span
/// (a type that is not an `Event` is reported there) and a typed topic's check is spanned at
/// its path (a `Topic<Other>` is reported there).
fn builder_tokens(config: &Config, event_ty: &Type, name: &str) -> TokenStream {
    let krate = &config.krate;
    match &config.topic {
        Some(TopicArg::Path(path)) => {
            let subject = quote_spanned! {path.span()=>
                #krate::__private::subject_of::<#event_ty, _>(#path)
            };
            quote!(#krate::__private::subscription_on::<#event_ty>(#name, #subject))
        }
        Some(TopicArg::Literal(lit)) => {
            quote!(#krate::__private::subscription_on::<#event_ty>(#name, #lit))
        }
        None => quote!(#krate::__private::subscription::<#event_ty>(#name)),
    }
}

/// The builder calls of the settings, in the order the builder takes them: `.group(..)`, one
/// `.layer(..)` per middleware in the order written, `.concurrency(n)`, `.ordered()`,
/// `.max_deliver(n)`, `.backoff(vec![..])`.
fn settings_tokens(config: &Config) -> TokenStream {
    let krate = &config.krate;
    let group = config.group.as_ref().map(|g| quote!(.group(#g)));
    let layers = config.layers.iter().map(|l| layer_tokens(krate, l));
    let concurrency = config.concurrency.map(|n| quote!(.concurrency(#n)));
    let ordered = config.ordered.then(|| quote!(.ordered()));
    let max_deliver = config.max_deliver.map(|n| quote!(.max_deliver(#n)));
    let backoff = config.backoff.as_ref().map(|delays| {
        let delays = delays.iter().map(duration_tokens);
        quote!(.backoff(::std::vec![#(#delays),*]))
    });
    let start = config.start.as_ref().map(|s| start_tokens(krate, s));
    let durable = config.durable.as_ref().map(|d| quote!(.durable(#d)));
    quote! {
        #group #(.layer(#layers))* #concurrency #ordered #max_deliver #backoff #start #durable
    }
}

/// `.start(StartPosition::..)` for `start = "..."`, parsed at compile time.
fn start_tokens(krate: &syn::Path, start: &StartLit) -> TokenStream {
    let position = quote_spanned!(start.span=> #krate::config::StartPosition);
    let value = match start.value {
        Start::All => quote!(#position::All),
        Start::New => quote!(#position::New),
        Start::Last => quote!(#position::Last),
        Start::Sequence(n) => quote!(#position::Sequence(#n)),
        Start::Time(since_epoch) => {
            let (secs, nanos) = (since_epoch.as_secs(), since_epoch.subsec_nanos());
            quote!(#position::Time(
                ::std::time::UNIX_EPOCH + ::core::time::Duration::new(#secs, #nanos)
            ))
        }
    };
    quote!(.start(#value))
}

/// `.ordered_by(..)` for `ordered_by = field` (on the concrete event type, spanned at the field
/// so a misspelt one is reported there) or `.ordered_by_header(..)`.
fn order_key_tokens(config: &Config, event_ty: &Type) -> Option<TokenStream> {
    Some(match config.ordered_by.as_ref()? {
        OrderKey::Field(field) => quote_spanned! {field.span()=>
            .ordered_by(|__bus_event: &#event_ty| ::core::clone::Clone::clone(&__bus_event.#field))
        },
        OrderKey::Header(name) => quote!(.ordered_by_header(#name)),
    })
}

/// The middleware value of a layer argument.
fn layer_tokens(krate: &syn::Path, layer: &Layer) -> TokenStream {
    match layer {
        Layer::Retry(r) => retry_tokens(krate, r),
        Layer::Timeout(d) => {
            let d = duration_tokens(d);
            quote!(#krate::middleware::Timeout::new(#d))
        }
        Layer::Recovery => quote!(#krate::middleware::Recovery),
        Layer::Logging(None) => quote!(#krate::middleware::Logging::new()),
        Layer::Logging(Some(level)) => {
            quote!(#krate::middleware::Logging::level(#krate::__private::Level::#level))
        }
        Layer::Metrics => quote!(#krate::middleware::Metrics),
        Layer::ErrorHandler(path) => {
            quote_spanned!(path.span()=> #krate::middleware::ErrorHandler::new(#path))
        }
    }
}

fn retry_tokens(krate: &syn::Path, r: &RetryArgs) -> TokenStream {
    let attempts = r.attempts;
    let initial_delay = r.initial_delay.as_ref().map(|d| {
        let d = duration_tokens(d);
        quote!(.initial_delay(#d))
    });
    let max_delay = r.max_delay.as_ref().map(|d| {
        let d = duration_tokens(d);
        quote!(.max_delay(#d))
    });
    let multiplier = r.multiplier.map(|m| quote!(.multiplier(#m)));
    let jitter = r.jitter.map(|j| quote!(.jitter(#j)));
    quote! {
        #krate::middleware::Retry::new(#attempts) #initial_delay #max_delay #multiplier #jitter
    }
}

/// A duration parsed at compile time, as a `Duration::new(secs, nanos)` spanned at its literal.
fn duration_tokens(d: &DurationLit) -> TokenStream {
    let secs = d.value.as_secs();
    let nanos = d.value.subsec_nanos();
    quote_spanned!(d.span=> ::core::time::Duration::new(#secs, #nanos))
}

/// The closure the bus calls: clones the state, calls the handler, converts its result (spanned
/// at the return type, so a wrong one is reported there).
fn handler_closure_tokens(krate: &syn::Path, sig: &HandlerSig<'_>, ident: &Ident) -> TokenStream {
    let event_ty = sig.event_ty;
    let ret_ty = sig.ret_ty;
    let event_var = format_ident!("__bus_event");
    let delivery_var = format_ident!("__bus_delivery");
    let state_var = format_ident!("__bus_state");
    let delivery_param = if sig.extras.contains(&Extra::Delivery) {
        quote!(#delivery_var)
    } else {
        quote!(_)
    };
    let extra_args = sig.extras.iter().map(|e| match e {
        Extra::Delivery => &delivery_var,
        Extra::State => &state_var,
    });
    let clone_state = sig
        .state_ty
        .map(|_| quote!(let #state_var = ::core::clone::Clone::clone(&#state_var);));
    let convert = quote_spanned! {ret_ty.span()=>
        <#ret_ty as #krate::__private::HandlerResult>::into_handler_result(__bus_fut.await)
    };
    quote! {
        move |#event_var: #event_ty, #delivery_param: #krate::Delivery| {
            #clone_state
            let __bus_fut = #ident::handle(#event_var #(, #extra_args)*);
            async move { #convert }
        }
    }
}

/// For a topic literal, a `const` that checks at compile time, with the runtime's own `const
/// fn`s, that it is a valid filter (as the macro already checked with `bus_names`) and the
/// event's topic or a subject under it (which needs the event type, so the macro cannot).
fn topic_check_tokens(config: &Config, event_ty: &Type, cfgs: &[&Attribute]) -> TokenStream {
    let Some(TopicArg::Literal(lit)) = &config.topic else {
        return TokenStream::new();
    };
    let krate = &config.krate;
    let value = lit.value();
    let ty = event_ty.to_token_stream().to_string().replace(' ', "");
    let invalid = format!("topic {value:?} is not a valid subscription filter");
    let mismatch = format!(
        "topic {value:?} is not a topic of `{ty}`: a handler's topic literal must be its event's \
         topic (`{ty}::TOPIC`) or a subject under it (`<topic>.eu`, `<topic>.*`, `<topic>.>`); \
         name a `Topic<{ty}>` constant for another topic of the same event"
    );
    quote_spanned! {lit.span()=>
        #(#cfgs)*
        const _: () = {
            if !#krate::__private::filter_is_valid(#lit) {
                ::core::panic!(#invalid)
            }
            if !#krate::__private::filter_within(#lit, #krate::__private::topic_of::<#event_ty>()) {
                ::core::panic!(#mismatch)
            }
        };
    }
}
