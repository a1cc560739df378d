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

// `error_handler` names a `fn(HandlerError, &Delivery) -> Result<(), HandlerError>`.
fn log_only(err: HandlerError) {
    let _ = err;
}

#[event_handler(error_handler = log_only)]
async fn on_price(event: PriceUpdated) -> Result<(), HandlerError> {
    let _ = event;
    Ok(())
}

fn main() {}
