use bus::{event_handler, Event, HandlerError, Topic};

#[derive(Clone, PartialEq, prost::Message)]
pub struct Payment {
    #[prost(string, tag = "1")]
    pub account: String,
}

impl Event for Payment {
    const TOPIC: Topic<Self> = Topic::new("cqc.events.v1.payment");
    const EVENT_TYPE: &'static str = "payment";
    const FULL_NAME: &'static str = "cqc.events.v1.Payment";
}

// `ordered` already orders everything; a header name with a space cannot be sent.
#[event_handler(ordered, ordered_by = account, ordered_by_header = "bad name")]
async fn post(_event: Payment) -> Result<(), HandlerError> {
    Ok(())
}

// A field the event does not have.
#[event_handler(ordered_by = acount)]
async fn post_misspelt(_event: Payment) -> Result<(), HandlerError> {
    Ok(())
}

fn main() {}
