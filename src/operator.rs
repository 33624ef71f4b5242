//! Operator commands of the CLI: they read and write exactly the Redis keys
//! documented for operators, nothing else.

use anyhow::{bail, Context as _};
use ctsync_actors::keys;
use ctsync_actors::model::TableId;
use ctsync_actors::ports::StateStore;

use crate::cli::Command;
use crate::state::RedisState;

/// The table an operator named, or an error saying how names are written.
fn table_id(name: &str) -> anyhow::Result<TableId> {
    TableId::from_key_name(name).with_context(|| {
        format!(
            "'{name}' is not a table name: write `Table` for dbo tables, `schema.Table` otherwise, \
             and bracket a part that contains '.', '[' or ']' (e.g. `[my.table]`)"
        )
    })
}

pub async fn run(redis_url: &str, command: Command) -> anyhow::Result<()> {
    let state = RedisState::new(redis_url).context("REDIS_URL is not a valid Redis URL")?;
    match command {
        Command::Enable { table } => state.set_enabled(&table_id(&table)?, true).await?,
        Command::Disable { table } => state.set_enabled(&table_id(&table)?, false).await?,
        Command::ForceFullLoad { table } => state.request_full_load(&table_id(&table)?).await?,
        Command::SetVersion { table, version } => {
            if version < 0 {
                bail!("version must not be negative");
            }
            let id = table_id(&table)?;
            state.set_version(&id, version).await?;
            // The copy came from the current primary: adopt its identity.
            state.del(&keys::primary_identity(&id)).await?;
        }
        Command::Tables => {
            for name in state.table_names().await? {
                let id = table_id(&name)?;
                let flags = state.flags(&id).await?;
                let version = match state.version(&id).await {
                    Ok(v) => v.map(|v| v.to_string()).unwrap_or_else(|| "-".into()),
                    Err(e @ ctsync_actors::Error::BadValue { .. }) => format!("<{e}>"),
                    Err(e) => return Err(e.into()),
                };
                println!(
                    "{name}\tenabled={}\tforce_full_load={}\tversion={version}",
                    flags.enabled, flags.force_full_load
                );
            }
        }
        Command::Run | Command::CheckConfig | Command::Healthcheck => {
            bail!("not an operator command")
        }
    }
    Ok(())
}
