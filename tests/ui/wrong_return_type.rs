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

// `Result<(), E>` with `E: Into<HandlerError>`, nothing else.
#[event_handler]
async fn returns_a_value(event: PriceUpdated) -> Result<f64, HandlerError> {
    Ok(event.price)
}

fn main() {}
