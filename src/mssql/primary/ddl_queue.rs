//! The DDL queue port on Service Broker: `BEGIN TRANSACTION` + `WAITFOR
//! (RECEIVE …), TIMEOUT …` on a dedicated connection, ended by `COMMIT` (or
//! `ROLLBACK` when the inbox could not record the messages). Any failure
//! after `BEGIN` discards the connection, so no transaction is ever left
//! open on it: the server rolls the receive back and delivers the messages
//! again. So does a receive or a commit whose future is dropped mid-request
//! (the core's call limit): its lease closes the connection (`conn::Lease`).
//! The receive's transaction spans port calls by design (receive, then
//! commit), so it is not marked as one on the lease.

use std::time::Duration;

use async_trait::async_trait;
use ctsync_actors::ports::{DdlQueue, QueueMessage};
use ctsync_actors::{Error, Result};
use tiberius::ColumnData;

use crate::mssql::conn::{Connection, Endpoint, Lease};
use crate::mssql::pool::{batch, execute, query_rows};
use crate::mssql::sql;
use crate::mssql::MssqlError;

pub struct MssqlDdlQueue {
    conn: Connection,
    /// `[schema].[queue]`, quoted.
    queue: String,
}

fn err(e: MssqlError) -> Error {
    Error::Primary(e.to_string())
}

/// Decodes a message body as SQL Server's own varbinary → xml conversion
/// reads it: a byte-order mark decides (UTF-16 LE/BE, UTF-8); without one,
/// a body whose second byte is 0 is UTF-16 LE (event notifications are),
/// else UTF-8. A body that decodes to nothing readable comes back as `0x…`
/// hex, so it can be parked as it is.
pub fn decode_body(bytes: &[u8]) -> String {
    fn utf16(bytes: &[u8], le: bool) -> Option<String> {
        if !bytes.len().is_multiple_of(2) {
            return None;
        }
        let units = bytes.chunks_exact(2).map(|c| {
            if le {
                u16::from_le_bytes([c[0], c[1]])
            } else {
                u16::from_be_bytes([c[0], c[1]])
            }
        });
        char::decode_utf16(units)
            .collect::<std::result::Result<String, _>>()
            .ok()
    }
    let decoded = match bytes {
        [0xFF, 0xFE, rest @ ..] => utf16(rest, true),
        [0xFE, 0xFF, rest @ ..] => utf16(rest, false),
        [0xEF, 0xBB, 0xBF, rest @ ..] => std::str::from_utf8(rest).ok().map(str::to_string),
        [_, 0, ..] => utf16(bytes, true),
        _ => std::str::from_utf8(bytes).ok().map(str::to_string),
    };
    decoded.unwrap_or_else(|| {
        let mut hex = String::with_capacity(2 + 2 * bytes.len());
        hex.push_str("0x");
        for b in bytes {
            hex.push_str(&format!("{b:02X}"));
        }
        hex
    })
}

fn message(row: &tiberius::Row) -> std::result::Result<QueueMessage, MssqlError> {
    let bad = |col: &str, e: tiberius::error::Error| {
        MssqlError::Conversion(format!("DDL queue column {col}: {e}"))
    };
    let conversation = row
        .try_get::<tiberius::Uuid, _>("conversation_handle")
        .map_err(|e| bad("conversation_handle", e))?
        .map(|u| u.to_string())
        .unwrap_or_default();
    let sequence = row
        .try_get::<i64, _>("message_sequence_number")
        .map_err(|e| bad("message_sequence_number", e))?
        .unwrap_or_default();
    let message_type = row
        .try_get::<&str, _>("message_type_name")
        .map_err(|e| bad("message_type_name", e))?
        .unwrap_or_default()
        .to_string();
    let body = row
        .try_get::<&[u8], _>("message_body")
        .map_err(|e| bad("message_body", e))?
        .map(decode_body);
    Ok(QueueMessage {
        id: format!("{conversation}:{sequence}"),
        conversation,
        message_type,
        body,
    })
}

impl MssqlDdlQueue {
    /// `queue` is `schema.name` or a bare name in `dbo`.
    pub fn new(endpoint: Endpoint, queue: &str) -> Self {
        Self::with_connector(std::sync::Arc::new(endpoint), queue)
    }

    /// A queue reader whose session `connector` opens (tests: a recording
    /// one).
    pub fn with_connector(
        connector: std::sync::Arc<dyn crate::mssql::session::Connector>,
        queue: &str,
    ) -> Self {
        let (schema, name) = queue.split_once('.').unwrap_or(("dbo", queue));
        Self {
            conn: Connection::new(connector),
            queue: sql::queue_name(schema, name),
        }
    }

    async fn receive_on(
        &self,
        lease: &mut Lease<'_>,
        max: usize,
        wait: Duration,
    ) -> std::result::Result<Vec<QueueMessage>, MssqlError> {
        let what = || format!("receiving from {}", self.queue);
        batch(lease, sql::BEGIN_RECEIVE, what).await?;
        let statement = sql::receive(&self.queue, max.max(1), wait.as_millis() as u64);
        let rows = query_rows(lease, &statement, vec![], what).await?;
        rows.iter().map(message).collect()
    }

    /// Sends `text` on the receive's connection; any failure discards it
    /// (the server then rolls the receive back).
    async fn finish(&self, text: &str, what: &str) -> Result<()> {
        let mut lease = self.conn.lease().await.map_err(err)?;
        let result = batch(&mut lease, text, || format!("{what} on {}", self.queue)).await;
        if result.is_err() {
            lease.discard();
        }
        result.map_err(err)
    }
}

#[async_trait]
impl DdlQueue for MssqlDdlQueue {
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<QueueMessage>> {
        let mut lease = self.conn.lease().await.map_err(err)?;
        let result = self.receive_on(&mut lease, max, wait).await;
        if result.is_err() {
            // Never leave the transaction open on this connection.
            lease.discard();
        }
        result.map_err(err)
    }

    async fn end_conversation(&self, conversation: &str) -> Result<()> {
        let mut lease = self.conn.lease().await.map_err(err)?;
        let param = vec![ColumnData::String(Some(conversation.to_string().into()))];
        let result = execute(&mut lease, sql::END_CONVERSATION, param, || {
            format!("ending conversation {conversation} on {}", self.queue)
        })
        .await;
        if result.is_err() {
            lease.discard();
        }
        result.map(|_| ()).map_err(err)
    }

    async fn commit(&self) -> Result<()> {
        self.finish(sql::COMMIT, "committing the receive").await
    }

    async fn rollback(&self) -> Result<()> {
        self.finish(sql::ROLLBACK, "rolling back the receive").await
    }
}

#[cfg(test)]
mod tests {
    use super::decode_body;

    fn utf16le(s: &str, bom: bool) -> Vec<u8> {
        let mut out = if bom { vec![0xFF, 0xFE] } else { vec![] };
        for u in s.encode_utf16() {
            out.extend_from_slice(&u.to_le_bytes());
        }
        out
    }

    #[test]
    fn bodies_decode_like_sql_servers_xml_conversion() {
        let xml = "<EVENT_INSTANCE><ObjectName>Üser</ObjectName></EVENT_INSTANCE>";
        assert_eq!(decode_body(&utf16le(xml, true)), xml);
        assert_eq!(decode_body(&utf16le(xml, false)), xml);
        assert_eq!(decode_body(xml.as_bytes()), xml);
        let mut bom8 = vec![0xEF, 0xBB, 0xBF];
        bom8.extend_from_slice(xml.as_bytes());
        assert_eq!(decode_body(&bom8), xml);
    }

    #[test]
    fn a_body_that_is_not_text_comes_back_as_hex() {
        assert_eq!(decode_body(&[0xC3, 0x28, 0x01]), "0xC32801");
        // Odd length with a zero second byte: not UTF-16.
        assert_eq!(decode_body(&[0x41, 0x00, 0x42]), "0x410042");
    }
}
