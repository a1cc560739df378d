use bus::{event_handler, Event, HandlerError, Topic};

#[derive(Clone, PartialEq, prost::Message)]
pub struct PriceUpdated {
    #[prost(double, tag = "1")]
    pub price: f64,
}

impl Event for PriceUpdated {
    const TOPIC: Topic<Self> = Topic::new("cqc.events.v1.price_updated");
    const EVENT_TYPE: &'static str = "price_updated";
    const FULL_NAME: &'static str = "cqc.events.v1.PriceUpdated";
}

// A topic literal follows the NATS subject rules (wildcards are fine in a filter).
#[event_handler(topic = "cqc.events..price_updated")]
async fn double_dot(event: PriceUpdated) -> Result<(), HandlerError> {
    let _ = event;
    Ok(())
}

#[event_handler(topic = "cqc.events.v1.>.eu")]
async fn wildcard_not_last(event: PriceUpdated) -> Result<(), HandlerError> {
    let _ = event;
    Ok(())
}

#[event_handler(topic = "cqc.events.v1.price updated")]
async fn whitespace(event: PriceUpdated) -> Result<(), HandlerError> {
    let _ = event;
    Ok(())
}

fn main() {}
