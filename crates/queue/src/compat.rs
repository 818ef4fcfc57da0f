//! The mailer's results in the one vocabulary.

use postline::delivery::{Delivery, DeliveryStatus};

/// The mailer's per-recipient results as [`Delivery`] values.
pub fn from_mailer(d: postline::Delivery) -> Vec<Delivery> {
    d.recipients
        .into_iter()
        .map(|r| {
            let host = r.host.clone();
            let mut out = match r.status {
                postline::DeliveryStatus::Delivered { reply } => {
                    Delivery::new(r.address, DeliveryStatus::Delivered, Some(&reply), "")
                }
                postline::DeliveryStatus::Failed {
                    permanent,
                    reason,
                    reply,
                } => Delivery::new(
                    r.address,
                    if permanent {
                        DeliveryStatus::Failed
                    } else {
                        DeliveryStatus::Deferred
                    },
                    reply.as_ref(),
                    reason,
                ),
            };
            out.host = host;
            out
        })
        .collect()
}
