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

// The event must be the first argument.
#[event_handler]
async fn no_arguments() -> Result<(), HandlerError> {
    Ok(())
}

#[event_handler]
async fn delivery_first(delivery: bus::Delivery, event: PriceUpdated) -> Result<(), HandlerError> {
    let _ = (delivery, event);
    Ok(())
}

fn main() {}
