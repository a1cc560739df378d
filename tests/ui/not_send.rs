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

// The handler's future runs on the bus's tasks, so it must be `Send`.
#[event_handler]
async fn on_price(event: PriceUpdated) -> Result<(), HandlerError> {
    let not_send = std::rc::Rc::new(event.price);
    tokio::task::yield_now().await;
    let _ = not_send;
    Ok(())
}

fn main() {}
