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
//! (no state) or `on_price.with_state(state) -> Subscription`. Type-dependent checks (the event
//! type, the return type, a typed topic) go through `bus::__private` traits that carry
//! `#[diagnostic::on_unimplemented]` messages, spanned at the user's tokens.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::ItemFn;
use syn::ext::IdentExt;
use syn::spanned::Spanned;

use crate::attr::{Config, DurationLit, Layer, RetryArgs, TopicArg};
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

fn duration_tokens(d: &DurationLit) -> TokenStream {
    let secs = d.value.as_secs();
    let nanos = d.value.subsec_nanos();
    quote_spanned!(d.span=> ::core::time::Duration::new(#secs, #nanos))
}

fn retry_tokens(krate: &syn::Path, r: &RetryArgs) -> TokenStream {
    let attempts = r.attempts;
    let mut t = quote!(#krate::middleware::Retry::new(#attempts));
    if let Some(d) = &r.initial_delay {
        let d = duration_tokens(d);
        t.extend(quote!(.initial_delay(#d)));
    }
    if let Some(d) = &r.max_delay {
        let d = duration_tokens(d);
        t.extend(quote!(.max_delay(#d)));
    }
    if let Some(m) = r.multiplier {
        t.extend(quote!(.multiplier(#m)));
    }
    if let Some(j) = r.jitter {
        t.extend(quote!(.jitter(#j)));
    }
    t
}

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

fn generate(config: &Config, sig: &HandlerSig<'_>, f: &ItemFn) -> TokenStream {
    let krate = &config.krate;
    let vis = &f.vis;
    let ident = &f.sig.ident;
    let name = ident.unraw().to_string();
    let event_ty = sig.event_ty;
    let ret_ty = sig.ret_ty;
    let inputs = &f.sig.inputs;
    let output = &f.sig.output;
    let block = &f.block;
    let asyncness = &f.sig.asyncness;

    let docs: Vec<_> = f
        .attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .collect();
    let cfgs: Vec<_> = f
        .attrs
        .iter()
        .filter(|a| a.path().is_ident("cfg"))
        .collect();
    let fn_attrs = &f.attrs;

    // The subscription settings, in the order written.
    let mut spec = TokenStream::new();
    let mut consts = TokenStream::new();
    if let Some(TopicArg::Literal(lit)) = &config.topic {
        let value = lit.value();
        let ty = event_ty.to_token_stream().to_string().replace(' ', "");
        let invalid = format!("topic {value:?} is not a valid subscription filter");
        let mismatch = format!(
            "topic {value:?} is not a topic of `{ty}`: a handler's topic literal must be its event's \
             topic (`{ty}::TOPIC`) or a subject under it (`<topic>.eu`, `<topic>.*`, `<topic>.>`); \
             name a `Topic<{ty}>` constant for another topic of the same event"
        );
        consts = quote_spanned! {lit.span()=>
            #(#cfgs)*
            const _: () = {
                if !#krate::__private::filter_is_valid(#lit) {
                    ::core::panic!(#invalid)
                }
                if !#krate::__private::filter_within(#lit, #krate::__private::topic_of::<#event_ty>()) {
                    ::core::panic!(#mismatch)
                }
            };
        };
    }
    if let Some(g) = &config.group {
        spec.extend(quote!(.group(#g)));
    }
    for m in &config.layers {
        let layer = layer_tokens(krate, m);
        spec.extend(quote!(.layer(#layer)));
    }
    if let Some(n) = config.concurrency {
        spec.extend(quote!(.concurrency(#n)));
    }
    if config.ordered {
        spec.extend(quote!(.ordered()));
    }
    if let Some(n) = config.max_deliver {
        spec.extend(quote!(.max_deliver(#n)));
    }
    if let Some(b) = &config.backoff {
        let delays = b.iter().map(duration_tokens);
        spec.extend(quote!(.backoff(::std::vec![#(#delays),*])));
    }

    // The closure the bus calls: clones the state, calls the handler, converts its result.
    let event_var = format_ident!("__bus_event");
    let delivery_var = format_ident!("__bus_delivery");
    let state_var = format_ident!("__bus_state");
    let uses_delivery = sig.extras.contains(&Extra::Delivery);
    let delivery_param = if uses_delivery {
        quote!(#delivery_var)
    } else {
        quote!(_)
    };
    let mut call_args = vec![quote!(#event_var)];
    for e in &sig.extras {
        call_args.push(match e {
            Extra::Delivery => quote!(#delivery_var),
            Extra::State => quote!(#state_var),
        });
    }
    let clone_state = sig
        .state_ty
        .map(|_| quote!(let #state_var = ::core::clone::Clone::clone(&#state_var);));
    // Spanned at the return type, so a wrong one is reported there.
    let convert = quote_spanned! {ret_ty.span()=>
        <#ret_ty as #krate::__private::HandlerResult>::into_handler_result(__bus_fut.await)
    };
    let handler = quote! {
        move |#event_var: #event_ty, #delivery_param: #krate::Delivery| {
            #clone_state
            let __bus_fut = #ident::handle(#(#call_args),*);
            async move { #convert }
        }
    };
    // Spanned at the function's name (a future that is not `Send` is reported there); the
    // event type in the turbofish keeps its own span (a type that is not an `Event` is reported
    // there) and a typed topic's check is spanned at its path (a `Topic<Other>` is reported
    // there).
    let builder = match &config.topic {
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
    };
    let build = quote_spanned! {ident.span()=>
        #builder #spec .handler(#handler)
    };

    let subscribe_doc = if sig.state_ty.is_some() {
        format!(
            "\n\nAn event handler made by `#[event_handler]`: subscribe it with \
             `bus.subscribe({name}.with_state(state))`; call the function itself with `{name}::handle(..)`."
        )
    } else {
        format!(
            "\n\nAn event handler made by `#[event_handler]`: subscribe it with \
             `bus.subscribe({name})`; call the function itself with `{name}::handle(..)`."
        )
    };
    let handle_doc = if docs.is_empty() {
        Some(
            quote!(#[doc = "The handler's function, as written (call it directly in unit tests)."]),
        )
    } else {
        None
    };

    let subscription = match sig.state_ty {
        None => quote! {
            #(#cfgs)*
            impl #krate::IntoSubscription for #ident {
                fn into_subscription(self) -> #krate::Subscription {
                    #build
                }
            }
        },
        Some(state_ty) => quote! {
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
        },
    };

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

        #consts
    }
}
