//! A recording [`Session`] for tests: drives the real adapter
//! (`MssqlPrimary`, `MssqlReplica`) without a server. Every request is
//! written down with the call that sent it (batch, RPC, bulk rows) and its
//! session, answered from a script of canned result sets; a bulk load is
//! recorded as the requests tiberius 0.13 sends for it, its `INSERT BULK`
//! column list rendered by tiberius's own code from the metadata SQL
//! Server would describe the target with. `sql::session_rules` checks the
//! recorded sequence.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use ctsync_actors::model::{ColumnDef, Len, SqlType, TableSchema};
use tiberius::{
    BaseMetaDataColumn, ColumnData, ColumnFlag, FixedLenType, MetaDataColumn, Row, TypeInfo,
    VarLenContext, VarLenType,
};
use tiberius::{SqlBulkCopyOption, SqlBulkCopyOptions};

use super::replica::write_plan::declared_type;
use super::session::{BulkLoad, Call, Connector, Session, SqlResult};
use super::MssqlError;

/// One request as the server received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Which connection sent it (a new session after a discard).
    pub session: usize,
    pub call: Call,
    /// The SQL text (`""` for bulk rows).
    pub sql: String,
    /// The declared type of each parameter, as tiberius declares it.
    pub params: Vec<&'static str>,
    /// The value of each text parameter (`None` for other types and
    /// NULL): names go as values, and these are what the server got.
    pub texts: Vec<Option<String>>,
    /// Rows sent (bulk rows only).
    pub rows: usize,
    /// For an `INSERT BULK` batch: each target column and the type the
    /// target table declares for it.
    pub target: Vec<(String, String)>,
}

impl Request {
    fn new(session: usize, call: Call, sql: &str) -> Self {
        Self {
            session,
            call,
            sql: sql.to_string(),
            params: Vec::new(),
            texts: Vec::new(),
            rows: 0,
            target: Vec::new(),
        }
    }
}

/// A scripted answer.
pub enum Reply {
    /// Result sets (an RPC returns the first).
    Rows(Vec<Vec<Row>>),
    /// Rows affected.
    Count(u64),
    /// The request fails (a client-side error, `Error::Protocol`); the
    /// adapter discards the session.
    Fail(String),
    /// The request fails with a server error of this number and message
    /// (`Error::Server`, as SQL Server's ERROR token arrives: see
    /// [`server_error`]); the adapter discards the session.
    ServerError(u32, String),
    /// The server never answers.
    Hang,
}

type Script = dyn Fn(&Request) -> Option<Reply> + Send + Sync;

#[derive(Default)]
struct Shared {
    log: Vec<Request>,
    sessions: usize,
    /// Sessions closed (dropped by the adapter), in order.
    closed: Vec<usize>,
    tables: HashMap<String, TableSchema>,
}

/// Opens recording sessions that share one log and one script.
#[derive(Clone)]
pub struct Recorder {
    shared: Arc<Mutex<Shared>>,
    script: Arc<Script>,
}

impl Recorder {
    /// `script` answers each request; `None` gives empty result sets (and
    /// 0 rows affected).
    pub fn new(script: impl Fn(&Request) -> Option<Reply> + Send + Sync + 'static) -> Self {
        Self {
            shared: Default::default(),
            script: Arc::new(script),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Declares a table as it exists on the server, so a bulk load into it
    /// gets the column metadata SQL Server would send.
    pub fn describe(&self, schema: &TableSchema) {
        let name = super::sql::table(&schema.id);
        self.lock().tables.insert(name, schema.clone());
    }

    /// Every request so far, in order.
    pub fn log(&self) -> Vec<Request> {
        self.lock().log.clone()
    }

    /// The sessions the adapter closed (discarded), in order: the server
    /// rolls back whatever transaction each had open.
    pub fn closed(&self) -> Vec<usize> {
        self.lock().closed.clone()
    }

    /// Forgets the requests so far (sessions stay open).
    pub fn clear(&self) {
        self.lock().log.clear();
    }

    fn record(&self, request: Request) -> Option<Reply> {
        let reply = (self.script)(&request);
        self.lock().log.push(request);
        reply
    }
}

#[async_trait]
impl Connector for Recorder {
    async fn open(&self) -> Result<Box<dyn Session>, MssqlError> {
        let id = {
            let mut shared = self.lock();
            shared.sessions += 1;
            shared.sessions
        };
        Ok(Box::new(RecordingSession {
            id,
            recorder: self.clone(),
        }))
    }
}

struct RecordingSession {
    id: usize,
    recorder: Recorder,
}

impl Drop for RecordingSession {
    fn drop(&mut self) {
        self.recorder.lock().closed.push(self.id);
    }
}

fn text_value(value: &ColumnData<'static>) -> Option<String> {
    match value {
        ColumnData::String(Some(s)) => Some(s.to_string()),
        _ => None,
    }
}

fn failed(message: String) -> tiberius::error::Error {
    tiberius::error::Error::Protocol(message.into())
}

/// A server error (`tiberius::error::Error::Server`) of number `code` and
/// `message`, as tiberius decodes one off the wire. tiberius 0.13 has no
/// public constructor of `TokenError` (its fields are `pub(crate)`), so
/// this speaks just enough TDS to a real `tiberius::Client::connect` over
/// an in-memory pipe: a PRELOGIN answer without encryption, then an ERROR
/// token (MS-TDS 2.2.7.10) and a DONE token for the login, which tiberius
/// returns as the error. Anything else tiberius does with the bytes is
/// reported as a `Protocol` error naming it.
pub async fn server_error(code: u32, message: &str) -> tiberius::error::Error {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_util::compat::TokioAsyncReadCompatExt;

    let (client, mut server) = tokio::io::duplex(64 * 1024);
    let mut config = tiberius::Config::new();
    config.encryption(tiberius::EncryptionLevel::NotSupported);
    config.authentication(tiberius::AuthMethod::sql_server("recorder", "recorder"));
    let utf16 = |s: &str| -> Vec<u8> { s.encode_utf16().flat_map(u16::to_le_bytes).collect() };
    let packet = |payload: &[u8]| -> Vec<u8> {
        let length = u16::try_from(payload.len() + 8).unwrap_or(u16::MAX);
        let mut out = vec![0x04, 0x01];
        out.extend_from_slice(&length.to_be_bytes());
        out.extend_from_slice(&[0, 0, 1, 0]);
        out.extend_from_slice(payload);
        out
    };
    // PRELOGIN: VERSION (6 bytes at 11), ENCRYPTION (1 byte at 17:
    // ENCRYPT_NOT_SUP), terminator.
    let prelogin = packet(&[
        0x00, 0x00, 11, 0x00, 6, 0x01, 0x00, 17, 0x00, 1, 0xFF, 16, 0, 0, 0, 0, 0, 0x02,
    ]);
    let mut body = Vec::new();
    body.extend_from_slice(&code.to_le_bytes());
    body.extend_from_slice(&[1, 16]); // state, class
    let text = utf16(message);
    body.extend_from_slice(&u16::try_from(text.len() / 2).unwrap_or(0).to_le_bytes());
    body.extend_from_slice(&text);
    let server_name = utf16("recorder");
    body.push(u8::try_from(server_name.len() / 2).unwrap_or(0));
    body.extend_from_slice(&server_name);
    body.push(0); // no procedure
    body.extend_from_slice(&1u32.to_le_bytes()); // line
    let mut tokens = vec![0xAA];
    tokens.extend_from_slice(&u16::try_from(body.len()).unwrap_or(0).to_le_bytes());
    tokens.extend_from_slice(&body);
    // DONE: status DONE_ERROR, command 0, row count (8 bytes, TDS 7.2+).
    tokens.extend_from_slice(&[0xFD, 0x02, 0x00, 0x00, 0x00]);
    tokens.extend_from_slice(&0u64.to_le_bytes());
    let login = packet(&tokens);
    let answer = async move {
        // Each client message (PRELOGIN, then LOGIN7) up to its last packet.
        for reply in [prelogin, login] {
            loop {
                let mut header = [0u8; 8];
                server.read_exact(&mut header).await?;
                let length = usize::from(u16::from_be_bytes([header[2], header[3]]));
                let mut payload = vec![0u8; length.saturating_sub(8)];
                server.read_exact(&mut payload).await?;
                if header[1] & 0x01 != 0 {
                    break;
                }
            }
            server.write_all(&reply).await?;
        }
        // Kept open until the client is done with it.
        let mut rest = Vec::new();
        server.read_to_end(&mut rest).await.map(|_| ())
    };
    // A client that logged in is dropped at once: its end of the pipe
    // closes, so `answer` ends too and the join cannot wait for ever.
    let connect = async move {
        tiberius::Client::connect(config, client.compat())
            .await
            .map(drop)
    };
    let (connected, _) = tokio::join!(connect, answer);
    match connected {
        Err(e @ tiberius::error::Error::Server(_)) => e,
        Err(e) => failed(format!("building a server error {code}: {e}")),
        Ok(_) => failed(format!(
            "building a server error {code}: the login succeeded"
        )),
    }
}

async fn result_sets(reply: Option<Reply>) -> SqlResult<Vec<Vec<Row>>> {
    match reply {
        None | Some(Reply::Count(_)) => Ok(Vec::new()),
        Some(Reply::Rows(sets)) => Ok(sets),
        Some(Reply::Fail(m)) => Err(failed(m)),
        Some(Reply::ServerError(code, m)) => Err(server_error(code, &m).await),
        Some(Reply::Hang) => std::future::pending().await,
    }
}

#[async_trait]
impl Session for RecordingSession {
    async fn batch(&mut self, sql: &str) -> SqlResult<Vec<Vec<Row>>> {
        result_sets(
            self.recorder
                .record(Request::new(self.id, Call::Batch, sql)),
        )
        .await
    }

    async fn rpc_rows(
        &mut self,
        sql: &str,
        params: Vec<ColumnData<'static>>,
    ) -> SqlResult<Vec<Row>> {
        let mut request = Request::new(self.id, Call::Rpc, sql);
        request.params = params.iter().map(declared_type).collect();
        request.texts = params.iter().map(text_value).collect();
        Ok(result_sets(self.recorder.record(request))
            .await?
            .into_iter()
            .next()
            .unwrap_or_default())
    }

    async fn rpc_count(&mut self, sql: &str, params: Vec<ColumnData<'static>>) -> SqlResult<u64> {
        let mut request = Request::new(self.id, Call::Rpc, sql);
        request.params = params.iter().map(declared_type).collect();
        request.texts = params.iter().map(text_value).collect();
        match self.recorder.record(request) {
            None | Some(Reply::Rows(_)) => Ok(0),
            Some(Reply::Count(n)) => Ok(n),
            Some(Reply::Fail(m)) => Err(failed(m)),
            Some(Reply::ServerError(code, m)) => Err(server_error(code, &m).await),
            Some(Reply::Hang) => std::future::pending().await,
        }
    }

    /// The three requests of tiberius's `bulk_insert_with_options`
    /// (`src/client.rs`): the metadata batch, the `INSERT BULK` batch with
    /// its column list rendered from that metadata, and the rows.
    async fn bulk(&mut self, load: BulkLoad) -> SqlResult<u64> {
        let columns = load.columns.join(", ");
        let select = format!("SELECT TOP 0 {columns} FROM {}", load.table);
        result_sets(
            self.recorder
                .record(Request::new(self.id, Call::Batch, &select)),
        )
        .await?;
        let schema = self.recorder.lock().tables.get(&load.table).cloned();
        let schema = schema.ok_or_else(|| {
            failed(format!(
                "Invalid object name '{}' (not described to the recorder)",
                load.table
            ))
        })?;
        let keep_identity = load.options.contains(SqlBulkCopyOption::KeepIdentity);
        let mut rendered = Vec::new();
        let mut target = Vec::new();
        for name in &load.columns {
            let c = schema
                .columns
                .iter()
                .find(|c| &super::sql::quote(&c.name) == name)
                .ok_or_else(|| failed(format!("Invalid column name {name}")))?;
            let meta = colmetadata(c);
            if !(meta.base.is_updateable() || (keep_identity && meta.base.is_identity())) {
                continue;
            }
            rendered.push(format!("{meta}"));
            target.push((
                c.name.clone(),
                super::sql::type_ddl(&c.ty).unwrap_or_default(),
            ));
        }
        let mut insert = Request::new(
            self.id,
            Call::Batch,
            &insert_bulk(&load.table, &rendered.join(", "), load.options),
        );
        insert.target = target;
        result_sets(self.recorder.record(insert)).await?;
        let mut rows = Request::new(self.id, Call::BulkRows, "");
        rows.rows = load.rows.len();
        match self.recorder.record(rows) {
            Some(Reply::Fail(m)) => Err(failed(m)),
            Some(Reply::ServerError(code, m)) => Err(server_error(code, &m).await),
            Some(Reply::Hang) => std::future::pending().await,
            Some(Reply::Count(n)) => Ok(n),
            _ => Ok(load.rows.len() as u64),
        }
    }
}

/// tiberius 0.13's `build_insert_bulk_sql` (`src/client.rs`), for the
/// options ctsync uses.
fn insert_bulk(table: &str, columns: &str, options: SqlBulkCopyOptions) -> String {
    let mut clauses = Vec::new();
    if options.contains(SqlBulkCopyOption::CheckConstraints) {
        clauses.push("CHECK_CONSTRAINTS");
    }
    if options.contains(SqlBulkCopyOption::TableLock) {
        clauses.push("TABLOCK");
    }
    if options.contains(SqlBulkCopyOption::KeepNulls) {
        clauses.push("KEEP_NULLS");
    }
    if options.contains(SqlBulkCopyOption::FireTriggers) {
        clauses.push("FIRE_TRIGGERS");
    }
    let mut sql = format!("INSERT BULK {table} ({columns})");
    if !clauses.is_empty() {
        sql.push_str(&format!(" WITH ({})", clauses.join(", ")));
    }
    sql
}

/// How SQL Server describes a column of a table in COLMETADATA (MS-TDS
/// 2.2.7.4 and 2.2.5.4: a NOT NULL column of a fixed-length type as that
/// type, a nullable one as its nullable `…N` form; character and binary
/// lengths in bytes, 0xFFFF for max; time, datetime2 and datetimeoffset
/// with their scale as the length). A belief the contract suite pins.
pub fn colmetadata(c: &ColumnDef) -> MetaDataColumn<'static> {
    use FixedLenType as F;
    use VarLenType as V;
    let sized = |ty: V, len: usize| TypeInfo::VarLenSized(VarLenContext::new(ty, len, None));
    let fixed_or = |fixed: F, var: V, len: usize| {
        if c.nullable {
            sized(var, len)
        } else {
            TypeInfo::FixedLen(fixed)
        }
    };
    let bytes = |n: &Len| match n {
        Len::Max => 0xFFFF,
        Len::N(n) => *n as usize,
    };
    let ty = match &c.ty {
        SqlType::Bit => fixed_or(F::Bit, V::Bitn, 1),
        SqlType::TinyInt => fixed_or(F::Int1, V::Intn, 1),
        SqlType::SmallInt => fixed_or(F::Int2, V::Intn, 2),
        SqlType::Int => fixed_or(F::Int4, V::Intn, 4),
        SqlType::BigInt => fixed_or(F::Int8, V::Intn, 8),
        SqlType::Real => fixed_or(F::Float4, V::Floatn, 4),
        SqlType::Float { precision } if *precision <= 24 => fixed_or(F::Float4, V::Floatn, 4),
        SqlType::Float { .. } => fixed_or(F::Float8, V::Floatn, 8),
        SqlType::Money => fixed_or(F::Money, V::Money, 8),
        SqlType::SmallMoney => fixed_or(F::Money4, V::Money, 4),
        SqlType::DateTime => fixed_or(F::Datetime, V::Datetimen, 8),
        SqlType::SmallDateTime => fixed_or(F::Datetime4, V::Datetimen, 4),
        SqlType::Decimal { precision, scale } | SqlType::Numeric { precision, scale } => {
            TypeInfo::VarLenSizedPrecision {
                ty: if matches!(c.ty, SqlType::Numeric { .. }) {
                    V::Numericn
                } else {
                    V::Decimaln
                },
                size: decimal_bytes(*precision),
                precision: *precision,
                scale: *scale,
            }
        }
        SqlType::Char(n) => sized(V::BigChar, bytes(n)),
        SqlType::VarChar(n) => sized(V::BigVarChar, bytes(n)),
        SqlType::NChar(n) => sized(V::NChar, bytes(n)),
        SqlType::NVarChar(n) => sized(V::NVarchar, bytes(n)),
        SqlType::Binary(n) => sized(V::BigBinary, bytes(n)),
        SqlType::VarBinary(n) => sized(V::BigVarBin, bytes(n)),
        SqlType::RowVersion => sized(V::BigBinary, 8),
        SqlType::Text => sized(V::Text, 0x7FFF_FFFF),
        SqlType::NText => sized(V::NText, 0x7FFF_FFFE),
        SqlType::Image => sized(V::Image, 0x7FFF_FFFF),
        SqlType::UniqueIdentifier => sized(V::Guid, 16),
        SqlType::Date => sized(V::Daten, 3),
        SqlType::Time { scale } => sized(V::Timen, *scale as usize),
        SqlType::DateTime2 { scale } => sized(V::Datetime2, *scale as usize),
        SqlType::DateTimeOffset { scale } => sized(V::DatetimeOffsetn, *scale as usize),
        SqlType::Xml => TypeInfo::Xml {
            schema: None,
            size: 0xFFFF_FFFF_FFFF,
        },
        SqlType::Unsupported(_) => sized(V::BigVarBin, 0xFFFF),
    };
    let mut base = BaseMetaDataColumn {
        flags: if c.identity.is_some() {
            ColumnFlag::Identity.into()
        } else if c.computed.is_some() {
            ColumnFlag::Computed.into()
        } else {
            ColumnFlag::Updateable.into()
        },
        ty,
        table_name: None,
    };
    if c.nullable {
        base.flags |= ColumnFlag::Nullable;
    }
    MetaDataColumn {
        base,
        col_name: c.name.clone().into(),
    }
}

/// Storage bytes of a decimal of `precision` digits (decimal and numeric).
fn decimal_bytes(precision: u8) -> usize {
    match precision {
        0..=9 => 5,
        10..=19 => 9,
        20..=28 => 13,
        _ => 17,
    }
}

/// A canned row for a script: `(column name, value)` pairs.
pub fn row(cells: Vec<(&str, ColumnData<'static>)>) -> Row {
    let mut builder = Row::builder();
    for (name, value) in cells {
        let ty = column_type(&value);
        builder = builder.column(name, ty, value);
    }
    builder.build()
}

fn column_type(value: &ColumnData<'_>) -> tiberius::ColumnType {
    use tiberius::ColumnType as T;
    match value {
        ColumnData::U8(_) => T::Int1,
        ColumnData::I16(_) => T::Int2,
        ColumnData::I32(_) => T::Int4,
        ColumnData::I64(_) => T::Int8,
        ColumnData::F32(_) => T::Float4,
        ColumnData::F64(_) => T::Float8,
        ColumnData::Bit(_) => T::Bit,
        ColumnData::Guid(_) => T::Guid,
        ColumnData::Binary(_) => T::BigVarBin,
        _ => T::NVarchar,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fake server's error decodes as SQL Server's own: the number,
    /// the class (severity) and the text the adapter reads.
    #[tokio::test]
    async fn a_built_server_error_decodes_with_its_code_class_and_message() {
        let message = "Lock request time out period exceeded.";
        match server_error(1222, message).await {
            tiberius::error::Error::Server(token) => {
                assert_eq!(token.code(), 1222);
                assert_eq!(token.class(), 16);
                assert_eq!(token.state(), 1);
                assert_eq!(token.message(), message);
            }
            other => panic!("not a server error: {other:?}"),
        }
    }
}
