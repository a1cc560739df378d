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

// Every mistake is reported at once, and the function itself is kept, so code that calls it
// still compiles (only the attribute's errors appear).
#[event_handler(retry(attempts = 0), timeout = "30 secnds", group = "risk.eu", logging(level = "loud"), bogus)]
fn on_price(event: PriceUpdated) -> Result<(), HandlerError> {
    let _ = event;
    Ok(())
}

fn main() {
    let _ = on_price(PriceUpdated::default());
}
