//! The DDL queue port on Service Broker: `BEGIN TRANSACTION` + `WAITFOR
//! (RECEIVE …), TIMEOUT …` on a dedicated connection, ended only by
//! `COMMIT`. If the connection fails in between, the server rolls the
//! receive back and the messages are delivered again.

use std::time::Duration;

use async_trait::async_trait;
use ctsync_actors::ports::{DdlQueue, QueueMessage};
use ctsync_actors::{Error, Result};

use super::catalog::text;
use super::conn::{Connection, Endpoint};
use super::pool::{batch, query_rows};
use super::{sql, MssqlError};

pub struct MssqlDdlQueue {
    conn: Connection,
    /// `[schema].[queue]`, quoted.
    queue: String,
}

fn err(e: MssqlError) -> Error {
    Error::Primary(e.to_string())
}

impl MssqlDdlQueue {
    /// `queue` is `schema.name` or a bare name in `dbo`.
    pub fn new(endpoint: Endpoint, queue: &str) -> Self {
        let (schema, name) = queue.split_once('.').unwrap_or(("dbo", queue));
        Self {
            conn: Connection::new(endpoint),
            queue: sql::queue_name(schema, name),
        }
    }
}

#[async_trait]
impl DdlQueue for MssqlDdlQueue {
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<QueueMessage>> {
        let mut lease = self.conn.lease().await.map_err(err)?;
        let what = || format!("receiving from {}", self.queue);
        batch(&mut lease, sql::BEGIN_RECEIVE, what)
            .await
            .map_err(err)?;
        let statement = sql::receive(&self.queue, max.max(1), wait.as_millis() as u64);
        let rows = query_rows(&mut lease, &statement, vec![], what)
            .await
            .map_err(err)?;
        rows.iter()
            .map(|r| {
                Ok(QueueMessage {
                    message_type: text(r, "message_type_name")
                        .map_err(err)?
                        .unwrap_or_default(),
                    body: text(r, "body").map_err(err)?,
                })
            })
            .collect()
    }

    async fn commit(&self) -> Result<()> {
        let mut lease = self.conn.lease().await.map_err(err)?;
        batch(&mut lease, sql::COMMIT, || {
            format!("committing the receive from {}", self.queue)
        })
        .await
        .map_err(err)
    }
}
