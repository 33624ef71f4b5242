//! The DDL queue port (Service Broker's `SyncDDLQueue` on the primary)
//! and the messages it delivers into the replica's inbox.

use async_trait::async_trait;

use crate::error::Result;

/// One message received from the DDL queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueMessage {
    /// `conversation_handle:message_sequence_number`: unique per message,
    /// so recording a message twice (a receive rolled back and delivered
    /// again) keeps one copy.
    pub id: String,
    /// The conversation the message belongs to (`conversation_handle`).
    pub conversation: String,
    pub message_type: String,
    /// The message body as text: EVENTDATA XML for event notifications; a
    /// body that is not XML comes as `0x…` hex, to be parked as it is.
    pub body: Option<String>,
}

/// The Service Broker queue of DDL events (`SyncDDLQueue`). `receive`
/// opens a transaction that `commit` ends once the messages are recorded in
/// the inbox. It is rolled back only when the inbox could not record them
/// (the listener then stops receiving until the inbox answers), so a
/// message is never lost and poison-message detection is never fed by a
/// message ctsync cannot handle.
#[async_trait]
pub trait DdlQueue: Send + Sync {
    /// Waits up to `wait` for up to `max` messages, inside a transaction.
    async fn receive(&self, max: usize, wait: std::time::Duration) -> Result<Vec<QueueMessage>>;
    /// Ends a conversation whose far end failed or closed (inside the open
    /// receive transaction).
    async fn end_conversation(&self, conversation: &str) -> Result<()>;
    /// Commits the open receive: its messages leave the queue.
    async fn commit(&self) -> Result<()>;
    /// Rolls the open receive back: its messages return to the queue.
    async fn rollback(&self) -> Result<()>;
}

/// A DDL message recorded in the replica's inbox, waiting to be applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxMessage {
    pub message: QueueMessage,
    /// Failed attempts to apply it so far.
    pub attempts: u32,
}

/// What became of an inbox message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboxOutcome {
    /// Applied or deliberately ignored: it leaves the inbox.
    Done,
    /// Failed; it stays pending for another attempt.
    Retry(String),
    /// Cannot be applied: it stays in the inbox as parked, with the error.
    Parked(String),
}
