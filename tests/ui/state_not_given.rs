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

// A handler that takes state is subscribed with `.with_state(state)`.
use bus::{EventBus, State};

pub struct AppState;

#[event_handler]
async fn on_price(event: PriceUpdated, state: State<AppState>) -> Result<(), HandlerError> {
    let _ = (event, state);
    Ok(())
}

async fn start(bus: EventBus) -> Result<(), bus::Error> {
    bus.subscribe(on_price).await
}

fn main() {
    let _ = start;
}
