//! The production [`Session`]: one tiberius client, each call mapped to the
//! tiberius call that sends the request that way; and the [`Connector`]
//! that opens one per connection of an [`Endpoint`].

use async_trait::async_trait;
use tiberius::{ColumnData, Query, Row};

use super::conn::{Endpoint, TdsClient};
use super::session::{BulkLoad, Connector, Session, SqlResult};
use super::MssqlError;

fn bound(sql: &str, params: Vec<ColumnData<'static>>) -> Query<'static> {
    let mut q = Query::new(sql.to_string());
    for p in params {
        q.bind(p);
    }
    q
}

/// The production session: one tiberius client.
pub struct TiberiusSession(pub TdsClient);

#[async_trait]
impl Session for TiberiusSession {
    async fn batch(&mut self, sql: &str) -> SqlResult<Vec<Vec<Row>>> {
        self.0
            .simple_query(sql.to_string())
            .await?
            .into_results()
            .await
    }

    async fn rpc_rows(
        &mut self,
        sql: &str,
        params: Vec<ColumnData<'static>>,
    ) -> SqlResult<Vec<Row>> {
        bound(sql, params)
            .query(&mut self.0)
            .await?
            .into_first_result()
            .await
    }

    async fn rpc_count(&mut self, sql: &str, params: Vec<ColumnData<'static>>) -> SqlResult<u64> {
        Ok(bound(sql, params).execute(&mut self.0).await?.total())
    }

    async fn bulk(&mut self, load: BulkLoad) -> SqlResult<u64> {
        let names: Vec<&str> = load.columns.iter().map(String::as_str).collect();
        let mut request = self
            .0
            .bulk_insert_with_options(&load.table, &names, load.options, &[])
            .await?;
        for row in load.rows {
            request.send(row).await?;
        }
        Ok(request.finalize().await?.total())
    }
}

#[async_trait]
impl Connector for Endpoint {
    async fn open(&self) -> Result<Box<dyn Session>, MssqlError> {
        Ok(Box::new(TiberiusSession(self.connect().await?)))
    }
}
