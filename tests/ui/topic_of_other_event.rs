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

// A typed topic constant must carry the handler's event type.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AssetCreated {
    #[prost(string, tag = "1")]
    pub asset_id: String,
}

impl Event for AssetCreated {
    const TOPIC: Topic<Self> = Topic::new("cqc.events.v1.asset_created");
    const EVENT_TYPE: &'static str = "asset_created";
    const FULL_NAME: &'static str = "cqc.events.v1.AssetCreated";
}

pub const NEW_ASSETS: Topic<AssetCreated> = Topic::new("cqc.events.v1.asset_created");

#[event_handler(topic = NEW_ASSETS)]
async fn on_price(event: PriceUpdated) -> Result<(), HandlerError> {
    let _ = event;
    Ok(())
}

fn main() {}
