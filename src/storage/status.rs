//! Message statuses (DESIGN §5) and their mapping to SMEV's InteractionStatusType for GetStatus.
//! It must not decide transitions; the store and the workers do.

use std::fmt;

/// Where a message is in its life. Stored as the upper-case text shown by `as_str`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    // incoming requests (this node is the provider)
    Received,
    Processing,
    ResponseReady,
    Delivered,
    Rejected,
    // outgoing requests (this node is the consumer)
    Queued,
    Sent,
    Answered,
    Closed,
    // both
    WaitingForRetry,
    Failed,
}

impl Status {
    pub const ALL: [Status; 11] = [
        Status::Received,
        Status::Processing,
        Status::ResponseReady,
        Status::Delivered,
        Status::Rejected,
        Status::Queued,
        Status::Sent,
        Status::Answered,
        Status::Closed,
        Status::WaitingForRetry,
        Status::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Received => "RECEIVED",
            Status::Processing => "PROCESSING",
            Status::ResponseReady => "RESPONSE_READY",
            Status::Delivered => "DELIVERED",
            Status::Rejected => "REJECTED",
            Status::Queued => "QUEUED",
            Status::Sent => "SENT",
            Status::Answered => "ANSWERED",
            Status::Closed => "CLOSED",
            Status::WaitingForRetry => "WAITING_FOR_RETRY",
            Status::Failed => "FAILED",
        }
    }

    /// Parses the stored text (case-insensitive, for the CLI's `--status`).
    pub fn parse(text: &str) -> Option<Status> {
        Status::ALL
            .into_iter()
            .find(|s| s.as_str().eq_ignore_ascii_case(text.trim()))
    }

    /// The InteractionStatusType value GetStatus reports for this status.
    pub fn interaction_status(self) -> &'static str {
        match self {
            Status::Received | Status::Queued => "requestIsQueued",
            Status::Processing => "underProcessing",
            Status::Sent => "requestIsAcceptedBySmev",
            Status::ResponseReady | Status::WaitingForRetry => "responseIsQueued",
            Status::Delivered | Status::Rejected => "responseIsDelivered",
            Status::Answered | Status::Closed => "responseIsProcessed",
            Status::Failed => "cancelled",
        }
    }

    /// Statuses after which nothing more happens unless an admin retries.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Status::Delivered | Status::Rejected | Status::Closed | Status::Failed
        )
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_round_trips_through_its_text() {
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(s));
            assert_eq!(Status::parse(&s.as_str().to_lowercase()), Some(s));
        }
        assert_eq!(Status::parse("nope"), None);
    }
}
