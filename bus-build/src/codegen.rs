//! The Rust code generated for a package's events. It reaches the runtime only through
//! `::bus::__private`, so it does not depend on what the user's crate imports.

use proc_macro2::{Ident, Span, TokenStream};
use quote::quote;

use crate::naming;

/// An event as the generator needs it.
#[derive(Debug, Clone)]
pub(crate) struct EventSpec {
    /// `cqc.events.v1.AssetCreated`
    full_name: String,
    /// `AssetCreated` (the Rust type prost generates)
    rust_name: String,
    /// `asset_created`
    event_type: String,
    /// `ASSET_CREATED`
    const_name: String,
    topic: String,
    event_id: EventId,
}

/// How the message carries its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EventId {
    /// No `string event_id` field.
    None,
    /// `string event_id = N;` (a `String`).
    Plain,
    /// `optional string event_id = N;` (an `Option<String>`).
    Optional,
}

impl EventSpec {
    /// The full protobuf name of the event's message.
    pub(crate) fn full_name(&self) -> &str {
        &self.full_name
    }

    /// The event's topic.
    pub(crate) fn topic(&self) -> &str {
        &self.topic
    }

    pub(crate) fn new(message: &prost_reflect::MessageDescriptor, topic: String) -> Self {
        let event_id = match message.get_field_by_name("event_id") {
            Some(field)
                if field.kind() == prost_reflect::Kind::String
                    && !field.is_list()
                    && !field.is_map()
                    && field.containing_oneof().is_none_or(|o| o.is_synthetic()) =>
            {
                if field.supports_presence() {
                    EventId::Optional
                } else {
                    EventId::Plain
                }
            }
            _ => EventId::None,
        };
        EventSpec {
            full_name: message.full_name().to_owned(),
            rust_name: naming::rust_type_name(message.name()),
            event_type: naming::snake_case(message.name()),
            const_name: naming::const_name(message.name()),
            topic,
            event_id,
        }
    }
}

fn ident(name: &str) -> Ident {
    match name.strip_prefix("r#") {
        Some(raw) => Ident::new_raw(raw, Span::call_site()),
        None => Ident::new(name, Span::call_site()),
    }
}

/// The code appended to the prost output of `package`.
pub(crate) fn package(package: &str, events: &[EventSpec]) -> TokenStream {
    let types: Vec<Ident> = events.iter().map(|e| ident(&e.rust_name)).collect();
    let consts: Vec<Ident> = events.iter().map(|e| ident(&e.const_name)).collect();

    let impls = events.iter().zip(&types).zip(&consts).map(|((e, ty), c)| {
        let event_type = &e.event_type;
        let full_name = &e.full_name;
        let event_id = match e.event_id {
            EventId::None => quote! {},
            EventId::Plain => quote! {
                fn event_id(&self) -> ::core::option::Option<&str> {
                    ::core::option::Option::Some(self.event_id.as_str()).filter(|id| !id.is_empty())
                }
            },
            EventId::Optional => quote! {
                fn event_id(&self) -> ::core::option::Option<&str> {
                    self.event_id.as_deref().filter(|id| !id.is_empty())
                }
            },
        };
        quote! {
            impl ::bus::__private::Event for #ty {
                const TOPIC: ::bus::__private::Topic<Self> = topics::#c;
                const EVENT_TYPE: &'static str = #event_type;
                const FULL_NAME: &'static str = #full_name;
                #event_id
            }
            impl ::core::convert::From<#ty> for AnyEvent {
                fn from(event: #ty) -> Self {
                    AnyEvent::#ty(event)
                }
            }
        }
    });

    let topic_consts = events.iter().zip(&types).zip(&consts).map(|((e, ty), c)| {
        let doc = format!(" `{}`: the topic of [`{}`](super::{}).", e.topic, e.full_name, e.rust_name);
        let topic = &e.topic;
        quote! {
            #[doc = #doc]
            pub const #c: ::bus::__private::Topic<super::#ty> = ::bus::__private::Topic::new(#topic);
        }
    });

    let variants = events.iter().zip(&types).map(|(e, ty)| {
        let doc = format!(" `{}`, on `{}`.", e.full_name, e.topic);
        quote! { #[doc = #doc] #ty(#ty) }
    });

    // The registry: descriptors sorted by topic, and an index sorted by full name.
    let mut by_topic: Vec<usize> = (0..events.len()).collect();
    by_topic.sort_by(|&a, &b| events[a].topic.cmp(&events[b].topic));
    let mut by_name: Vec<usize> = (0..by_topic.len()).collect();
    by_name.sort_by(|&a, &b| {
        events[by_topic[a]]
            .full_name
            .cmp(&events[by_topic[b]].full_name)
    });
    let by_name = by_name
        .into_iter()
        .map(proc_macro2::Literal::usize_unsuffixed);
    let descriptors = by_topic.iter().map(|&i| {
        let (e, ty) = (&events[i], &types[i]);
        let (topic, full_name, event_type) = (&e.topic, &e.full_name, &e.event_type);
        quote! {
            ::bus::__private::EventDescriptor::new(#topic, #full_name, #event_type, |payload| {
                <#ty as ::bus::__private::prost::Message>::decode(payload).map(AnyEvent::#ty)
            })
        }
    });

    let pkg_doc = format!(" Any event of package `{package}`: one variant per event.");
    let registry_doc = format!(
        " The events of package `{package}`: topic, full name and decoder of each, sorted by topic."
    );
    let topics_doc = format!(" The typed topics of the events of package `{package}`.");
    let fds_doc = format!(
        " The encoded `FileDescriptorSet` of package `{package}` and every file it imports, \
         with their comments: the schema for reflection and JSON (also \
         `REGISTRY.file_descriptor_set()`)."
    );
    let fds_file = crate::descriptor_set::file_name(package);

    quote! {
        #(#impls)*

        #[doc = #topics_doc]
        pub mod topics {
            #(#topic_consts)*
        }

        #[doc = #pkg_doc]
        ///
        /// Decode one from a topic and its bytes with [`AnyEvent::decode`], or subscribe a handler
        /// taking `AnyEvent` to a wildcard filter: it implements `bus::FromMessage`.
        #[derive(Clone, PartialEq, Debug)]
        #[allow(clippy::large_enum_variant)]
        pub enum AnyEvent {
            #(#variants,)*
        }

        impl AnyEvent {
            /// The registry of this package's events.
            pub fn registry() -> &'static ::bus::__private::Registry<AnyEvent> {
                &REGISTRY
            }

            /// Decodes `payload` as the event published on `topic`. An unknown topic is an
            /// error, not a panic; nothing is allocated but the decoded message.
            pub fn decode(
                topic: &str,
                payload: impl ::core::convert::Into<::bus::__private::Bytes>,
            ) -> ::core::result::Result<AnyEvent, ::bus::__private::DecodeError> {
                REGISTRY.decode(topic, payload.into())
            }

            /// Decodes `payload` as the event whose full protobuf name is `full_name`.
            pub fn decode_by_name(
                full_name: &str,
                payload: impl ::core::convert::Into<::bus::__private::Bytes>,
            ) -> ::core::result::Result<AnyEvent, ::bus::__private::DecodeError> {
                REGISTRY.decode_by_name(full_name, payload.into())
            }

            /// The topic of the event's type.
            pub fn topic(&self) -> &'static str {
                match self {
                    #(AnyEvent::#types(_) => <#types as ::bus::__private::Event>::TOPIC.as_str(),)*
                }
            }

            /// The full protobuf name of the event's type.
            pub fn full_name(&self) -> &'static str {
                match self {
                    #(AnyEvent::#types(_) => <#types as ::bus::__private::Event>::FULL_NAME,)*
                }
            }

            /// The short event type (`snake_case` of the message name).
            pub fn event_type(&self) -> &'static str {
                match self {
                    #(AnyEvent::#types(_) => <#types as ::bus::__private::Event>::EVENT_TYPE,)*
                }
            }

            /// The event's id, if its type has one and it is set.
            pub fn event_id(&self) -> ::core::option::Option<&str> {
                match self {
                    #(AnyEvent::#types(e) => ::bus::__private::Event::event_id(e),)*
                }
            }

            /// The protobuf encoding of the event.
            pub fn encode_to_vec(&self) -> ::std::vec::Vec<u8> {
                match self {
                    #(AnyEvent::#types(e) => ::bus::__private::prost::Message::encode_to_vec(e),)*
                }
            }

            /// Encodes the event into `buf`.
            pub fn encode(
                &self,
                buf: &mut impl ::bus::__private::prost::bytes::BufMut,
            ) -> ::core::result::Result<(), ::bus::__private::prost::EncodeError> {
                match self {
                    #(AnyEvent::#types(e) => ::bus::__private::prost::Message::encode(e, buf),)*
                }
            }

            /// The length of the protobuf encoding of the event.
            pub fn encoded_len(&self) -> usize {
                match self {
                    #(AnyEvent::#types(e) => ::bus::__private::prost::Message::encoded_len(e),)*
                }
            }
        }

        impl ::bus::__private::FromMessage for AnyEvent {
            const FULL_NAME: ::core::option::Option<&'static str> = ::core::option::Option::None;
            fn from_message(
                msg: &::bus::__private::RawMessage,
            ) -> ::core::result::Result<Self, ::bus::__private::HandlerError> {
                ::bus::__private::from_message(&REGISTRY, msg)
            }
            fn payload_event_id(&self) -> ::core::option::Option<&str> {
                self.event_id()
            }
        }

        #[doc = #registry_doc]
        pub static REGISTRY: ::bus::__private::Registry<AnyEvent> = ::bus::__private::Registry::new(
            #package,
            &[#(#descriptors),*],
            &[#(#by_name),*],
            FILE_DESCRIPTOR_SET,
        );

        #[doc = #fds_doc]
        pub const FILE_DESCRIPTOR_SET: &[u8] = ::core::include_bytes!(#fds_file);
    }
}
