//! In-memory stand-in for the Service Broker DDL queue, including its
//! poison-message rule: five rolled-back receives in a row disable it.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;

use crate::ddl::EVENT_NOTIFICATION;
use crate::error::{Error, Result};
use crate::ports::{DdlQueue, QueueMessage};

#[derive(Debug, Default)]
struct Data {
    queue: VecDeque<QueueMessage>,
    in_flight: Vec<QueueMessage>,
    commits: usize,
    rollbacks_in_a_row: usize,
    rollbacks: usize,
    disabled: bool,
    /// Messages pushed so far (their sequence numbers).
    pushed: u64,
    ended: Vec<String>,
}

#[derive(Debug, Default)]
pub struct MemoryDdlQueue {
    data: Mutex<Data>,
}

impl MemoryDdlQueue {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Data> {
        self.data.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Enqueues an event notification carrying `xml`.
    pub fn push_event(&self, xml: &str) {
        self.push(EVENT_NOTIFICATION, Some(xml));
    }

    /// Enqueues a message of `message_type` on the notification's
    /// conversation; returns its id.
    pub fn push(&self, message_type: &str, body: Option<&str>) -> String {
        let mut d = self.lock();
        d.pushed += 1;
        let conversation = "6f9619ff-8b86-d011-b42d-00c04fc964ff".to_string();
        let id = format!("{conversation}:{}", d.pushed);
        d.queue.push_back(QueueMessage {
            id: id.clone(),
            conversation,
            message_type: message_type.to_string(),
            body: body.map(str::to_string),
        });
        id
    }

    /// Conversations ended by the listener (`END CONVERSATION`).
    pub fn ended_conversations(&self) -> Vec<String> {
        self.lock().ended.clone()
    }

    /// The connection died mid-transaction: the server rolls the receive
    /// back and the messages return to the queue.
    pub fn abort(&self) {
        let mut d = self.lock();
        let back: Vec<QueueMessage> = d.in_flight.drain(..).collect();
        for m in back.into_iter().rev() {
            d.queue.push_front(m);
        }
        d.rollbacks += 1;
        d.rollbacks_in_a_row += 1;
        if d.rollbacks_in_a_row >= 5 {
            d.disabled = true;
        }
    }

    /// `ALTER QUEUE … WITH STATUS = ON`: an operator re-enables a queue
    /// that poison messages disabled.
    pub fn enable(&self) {
        let mut d = self.lock();
        d.disabled = false;
        d.rollbacks_in_a_row = 0;
    }

    /// The process holding an open receive died: rolled back, if open.
    pub fn abort_if_open(&self) {
        if !self.lock().in_flight.is_empty() {
            self.abort();
        }
    }

    pub fn pending(&self) -> usize {
        let d = self.lock();
        d.queue.len() + d.in_flight.len()
    }

    pub fn commits(&self) -> usize {
        self.lock().commits
    }

    pub fn rollbacks(&self) -> usize {
        self.lock().rollbacks
    }

    pub fn is_disabled(&self) -> bool {
        self.lock().disabled
    }
}

#[async_trait]
impl DdlQueue for MemoryDdlQueue {
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<QueueMessage>> {
        {
            let mut d = self.lock();
            if d.disabled {
                return Err(Error::Primary(
                    "The service queue \"SyncDDLQueue\" is currently disabled.".into(),
                ));
            }
            if !d.in_flight.is_empty() {
                return Err(Error::Primary(
                    "a receive transaction is already open".into(),
                ));
            }
            if !d.queue.is_empty() {
                let n = max.min(d.queue.len());
                let taken: Vec<QueueMessage> = d.queue.drain(..n).collect();
                d.in_flight = taken.clone();
                return Ok(taken);
            }
        }
        // WAITFOR … TIMEOUT: nothing arrived, an empty result.
        tokio::time::sleep(wait.min(Duration::from_millis(50))).await;
        Ok(Vec::new())
    }

    async fn end_conversation(&self, conversation: &str) -> Result<()> {
        self.lock().ended.push(conversation.to_string());
        Ok(())
    }

    async fn rollback(&self) -> Result<()> {
        self.abort_if_open();
        Ok(())
    }

    async fn commit(&self) -> Result<()> {
        let mut d = self.lock();
        d.in_flight.clear();
        d.commits += 1;
        d.rollbacks_in_a_row = 0;
        Ok(())
    }
}
