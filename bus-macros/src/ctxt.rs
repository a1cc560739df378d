//! Error collection, in the style of `serde_derive`'s `Ctxt`: every check records its errors and
//! the expansion reports them all at once, each on its own span. [`Keys`] is the one place that
//! reports a key given twice, for the attribute's arguments and for `retry(...)`'s settings.

use std::cell::RefCell;
use std::fmt::Display;

use proc_macro2::Span;
use quote::ToTokens;
use syn::Ident;
use syn::ext::IdentExt;

/// Collects the errors of one expansion. [`Ctxt::check`] must be called before it is dropped.
pub(crate) struct Ctxt {
    errors: RefCell<Option<Vec<syn::Error>>>,
}

impl Ctxt {
    pub(crate) fn new() -> Self {
        Ctxt {
            errors: RefCell::new(Some(Vec::new())),
        }
    }

    /// An error on the span of `obj`'s tokens (first to last token).
    pub(crate) fn error_spanned_by<T: ToTokens, M: Display>(&self, obj: T, msg: M) {
        self.syn_error(syn::Error::new_spanned(obj.into_token_stream(), msg));
    }

    /// An error on `span`.
    pub(crate) fn error_at<M: Display>(&self, span: Span, msg: M) {
        self.syn_error(syn::Error::new(span, msg));
    }

    /// A parse error (possibly several combined).
    pub(crate) fn syn_error(&self, err: syn::Error) {
        self.errors
            .borrow_mut()
            .as_mut()
            .expect("Ctxt used after check")
            .push(err);
    }

    /// All recorded errors combined into one, or `Ok` when there are none.
    pub(crate) fn check(self) -> syn::Result<()> {
        let mut errors = self
            .errors
            .borrow_mut()
            .take()
            .expect("Ctxt checked twice")
            .into_iter();
        let Some(mut combined) = errors.next() else {
            return Ok(());
        };
        for rest in errors {
            combined.combine(rest);
        }
        Err(combined)
    }
}

impl Drop for Ctxt {
    fn drop(&mut self) {
        if !std::thread::panicking() && self.errors.borrow().is_some() {
            panic!("bus-macros: forgot to check for errors");
        }
    }
}

/// The keys seen so far in one list of settings, so that a key given twice is reported once, on
/// its second occurrence (the first value is kept).
pub(crate) struct Keys {
    /// What a key is, for the message: "`#[event_handler]` argument", "`retry` setting".
    what: &'static str,
    seen: Vec<String>,
}

impl Keys {
    pub(crate) fn new(what: &'static str) -> Self {
        Keys {
            what,
            seen: Vec::new(),
        }
    }

    /// Whether `key` is given for the first time; if not, records a duplicate error on it.
    pub(crate) fn first(&mut self, cx: &Ctxt, key: &Ident) -> bool {
        let name = key.unraw().to_string();
        if self.seen.contains(&name) {
            cx.error_at(
                key.span(),
                format!(
                    "duplicate {} `{name}`: it is already given; give it once",
                    self.what
                ),
            );
            return false;
        }
        self.seen.push(name);
        true
    }
}
