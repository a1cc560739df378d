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

// Each argument's value has a type: durations are strings, counts are integers, flags take no value.
#[event_handler(timeout = 30, concurrency = "4", group = risk, recovery = true, retry(attempts = 3, jitter = 1.5))]
async fn on_price(event: PriceUpdated) -> Result<(), HandlerError> {
    let _ = event;
    Ok(())
}

fn main() {}
