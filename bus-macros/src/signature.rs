//! The checks of the handler function's signature: qualifiers, return type, event argument and
//! the optional `Delivery` / `State<T>` arguments. Each mistake is recorded in the [`Ctxt`] on
//! the offending tokens. Whether the types are right (an `Event`, a `Result<(), E>`) is left to
//! the compiler, through the expansion's `bus::__private` traits.

use syn::punctuated::Iter;
use syn::{FnArg, ItemFn, PathArguments, ReturnType, Signature, Type};

use crate::ctxt::Ctxt;

/// One argument of the handler after the event.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Extra {
    Delivery,
    State,
}

/// The checked function signature.
pub(crate) struct HandlerSig<'a> {
    pub(crate) event_ty: &'a Type,
    /// The arguments after the event, in the order written.
    pub(crate) extras: Vec<Extra>,
    /// `T` of a `State<T>` argument.
    pub(crate) state_ty: Option<&'a Type>,
    pub(crate) ret_ty: &'a Type,
}

const SHAPE: &str = "`async fn name(event: MyEvent, [delivery: Delivery], [state: State<T>]) -> Result<(), HandlerError>`";

/// What the first argument turned out to be.
enum FirstArg<'a> {
    Event(&'a Type),
    /// Not an event (recorded).
    Invalid,
    /// A `Delivery` or `State<T>` (recorded): the order is wrong, so the other arguments say
    /// nothing more.
    Misplaced,
}

impl<'a> HandlerSig<'a> {
    /// Checks `f`'s signature, recording every mistake; `None` when one was recorded that leaves
    /// nothing to generate from.
    pub(crate) fn from_fn(cx: &Ctxt, f: &'a ItemFn) -> Option<HandlerSig<'a>> {
        let sig = &f.sig;
        check_qualifiers(cx, sig);
        let ret_ty = return_type(cx, sig);
        let mut inputs = sig.inputs.iter();
        let event_ty = match first_arg(cx, sig, inputs.next()) {
            FirstArg::Event(ty) => Some(ty),
            FirstArg::Invalid => None,
            FirstArg::Misplaced => return None,
        };
        let (extras, state_ty) = extra_args(cx, inputs);
        Some(HandlerSig {
            event_ty: event_ty?,
            extras,
            state_ty,
            ret_ty: ret_ty?,
        })
    }
}

/// `async`, and none of `const`, `unsafe`, `extern`, generics or variadics.
fn check_qualifiers(cx: &Ctxt, sig: &Signature) {
    if sig.asyncness.is_none() {
        cx.error_at(
            sig.fn_token.span,
            format!("`#[event_handler]` needs an `async fn`: add `async`, as in {SHAPE}"),
        );
    }
    if let Some(c) = &sig.constness {
        cx.error_spanned_by(c, "an event handler cannot be `const`; remove `const`");
    }
    if let Some(u) = &sig.unsafety {
        cx.error_spanned_by(
            u,
            "an event handler cannot be `unsafe`: the bus calls it on every delivery",
        );
    }
    if let Some(abi) = &sig.abi {
        cx.error_spanned_by(
            abi,
            "an event handler cannot have an `extern` ABI; remove it",
        );
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        cx.error_spanned_by(
            &sig.generics,
            "an event handler cannot be generic: the bus needs its one concrete event type",
        );
    }
    if let Some(v) = &sig.variadic {
        cx.error_spanned_by(v, "an event handler cannot be variadic");
    }
}

/// The return type, which must be written (the compiler checks it is a `Result<(), E>`).
fn return_type<'a>(cx: &Ctxt, sig: &'a Signature) -> Option<&'a Type> {
    match &sig.output {
        ReturnType::Type(_, ty) => Some(&**ty),
        ReturnType::Default => {
            cx.error_at(
                sig.paren_token.span.close(),
                "an event handler must return `Result<(), E>` where `E: Into<bus::HandlerError>`: \
                 add `-> Result<(), HandlerError>` and return `Ok(())` when the event is handled",
            );
            None
        }
    }
}

/// The first argument: the event, by value and of a concrete type.
fn first_arg<'a>(cx: &Ctxt, sig: &Signature, first: Option<&'a FnArg>) -> FirstArg<'a> {
    let pt = match first {
        None => {
            cx.error_at(
                sig.paren_token.span.join(),
                format!("an event handler takes the event as its first argument: {SHAPE}"),
            );
            return FirstArg::Invalid;
        }
        Some(FnArg::Receiver(r)) => {
            cx.error_spanned_by(
                r,
                "an event handler is a free function and cannot take `self`",
            );
            return FirstArg::Invalid;
        }
        Some(FnArg::Typed(pt)) => pt,
    };
    if classify(&pt.ty).is_some() {
        cx.error_spanned_by(
            &pt.ty,
            format!("the first argument of an event handler must be the event: {SHAPE}"),
        );
        return FirstArg::Misplaced;
    }
    match &*pt.ty {
        Type::Reference(r) => {
            cx.error_spanned_by(
                r,
                "take the event by value (`event: MyEvent`): the handler owns its event",
            );
            FirstArg::Invalid
        }
        Type::ImplTrait(t) => {
            cx.error_spanned_by(
                t,
                "an event handler needs a concrete event type, not `impl Trait`",
            );
            FirstArg::Invalid
        }
        ty => FirstArg::Event(ty),
    }
}

/// The arguments after the event: `Delivery` and `State<T>`, each at most once, in any order.
/// Returns them in order, and `T`.
fn extra_args<'a>(cx: &Ctxt, inputs: Iter<'a, FnArg>) -> (Vec<Extra>, Option<&'a Type>) {
    let mut extras = Vec::new();
    let mut state_ty = None;
    for input in inputs {
        let pt = match input {
            FnArg::Typed(pt) => pt,
            FnArg::Receiver(r) => {
                cx.error_spanned_by(r, "an event handler cannot take `self`");
                continue;
            }
        };
        match classify(&pt.ty) {
            Some((kind, _)) if extras.contains(&kind) => cx.error_spanned_by(
                &pt.ty,
                "this argument is already taken once; remove the duplicate",
            ),
            Some((kind, inner)) => {
                extras.push(kind);
                if kind == Extra::State {
                    state_ty = inner;
                }
            }
            None => cx.error_spanned_by(
                &pt.ty,
                format!(
                    "unexpected argument: after the event, an event handler takes `delivery: Delivery` \
                     and `state: State<T>`, each at most once: {SHAPE}"
                ),
            ),
        }
    }
    (extras, state_ty)
}

/// Whether `ty` is `Delivery` or `State<T>` (by its last path segment), with `T`.
fn classify(ty: &Type) -> Option<(Extra, Option<&Type>)> {
    let Type::Path(p) = ty else { return None };
    if p.qself.is_some() {
        return None;
    }
    let seg = p.path.segments.last()?;
    match (seg.ident.to_string().as_str(), &seg.arguments) {
        ("Delivery", PathArguments::None) => Some((Extra::Delivery, None)),
        ("State", PathArguments::AngleBracketed(a)) if a.args.len() == 1 => match &a.args[0] {
            syn::GenericArgument::Type(t) => Some((Extra::State, Some(t))),
            _ => None,
        },
        _ => None,
    }
}
