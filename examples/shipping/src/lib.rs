//! Acme's shipping events and a handler, in a crate whose only dependencies are `bus`,
//! `bus-build` (to build) and `tokio`: the README section "Use it in your own crate", kept true
//! by being built and tested in the workspace.

use std::sync::Mutex;

use bus::{HandlerError, State, event_handler};

/// The generated code of package `acme.shipping.events.v1`: one module per package segment.
pub mod events {
    /// Version 1 of the shipping events.
    pub mod v1 {
        #![allow(missing_docs)]
        bus::include_events!("acme.shipping.events.v1");
    }
}

use events::v1::ParcelShipped;

/// The parcels this service saw shipped, in order.
pub type Shipped = State<Mutex<Vec<String>>>;

/// Records every shipped parcel's id.
#[event_handler]
pub async fn record_shipment(
    event: ParcelShipped,
    shipped: State<Mutex<Vec<String>>>,
) -> Result<(), HandlerError> {
    shipped
        .lock()
        .map_err(|_| HandlerError::permanent("the shipment list is poisoned"))?
        .push(event.parcel_id);
    Ok(())
}
