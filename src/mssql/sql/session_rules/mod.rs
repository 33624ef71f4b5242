//! Rules about how SQL Server treats a *sequence* of requests on one
//! session, which no parser can check on a single statement: what a batch
//! or an RPC (`sp_executesql`) creates and how long it lives, which
//! transaction a statement runs in, and SQL Server's hard limits. Each rule
//! names its source; `check` runs them over a recorded sequence
//! (`mssql::recording`), and every rule has a canary that must fail
//! (tests/session_rules.rs).

use std::collections::{HashMap, HashSet};

use crate::mssql::recording::Request;
use crate::mssql::session::Call;

mod lex;
mod sizes;

use lex::{dotted, lex, object_key, Tok};
use sizes::{bulk_type_ok, table_definition, ColumnSizes};

/// One rule: its id, what it says, and where SQL Server documents it.
pub struct Rule {
    pub id: &'static str,
    pub says: &'static str,
    pub source: &'static str,
}

pub const TEMP_SCOPE: Rule = Rule {
    id: "temp-scope",
    says: "a #temp table is used only while it exists: one created inside an RPC (sp_executesql) is dropped when that RPC returns; create session objects in a batch",
    source: "https://learn.microsoft.com/en-us/sql/t-sql/statements/create-table-transact-sql#temporary-tables",
};
pub const SET_SCOPE: Rule = Rule {
    id: "set-scope",
    says: "a SET option set inside an RPC reverts when it returns: no later request may rely on it",
    source: "https://learn.microsoft.com/en-us/sql/t-sql/statements/set-statements-transact-sql#considerations-when-you-use-the-set-statements",
};
pub const RPC_TRANSACTION: Rule = Rule {
    id: "rpc-transaction",
    says: "an RPC ends with the transaction count it started with (Msg 266 otherwise)",
    source: "https://learn.microsoft.com/en-us/sql/relational-databases/errors-events/database-engine-events-and-errors-0-to-999 (Msg 266)",
};
pub const SNAPSHOT_DDL: Rule = Rule {
    id: "snapshot-ddl",
    says: "no ALTER TABLE, CREATE/ALTER/DROP INDEX or partition DDL inside an explicit SNAPSHOT transaction (Msg 3964)",
    source: "https://learn.microsoft.com/en-us/sql/relational-databases/errors-events/mssqlserver-3961-database-engine-error",
};
pub const PARAMETERS: Rule = Rule {
    id: "parameters",
    says: "an RPC carries at most 2,100 parameters, sp_executesql's own @stmt and @params included",
    source: "https://learn.microsoft.com/en-us/sql/sql-server/maximum-capacity-specifications-for-sql-server",
};
pub const BOUND_PARAMETERS: Rule = Rule {
    id: "bound-parameters",
    says: "every @Pn an RPC's text uses is one of the parameters it sends (n at most their number), and a batch, which sends none, uses no @Pn it does not DECLARE (Msg 137 otherwise)",
    source: "https://learn.microsoft.com/en-us/sql/relational-databases/system-stored-procedures/sp-executesql-transact-sql (each parameter in @stmt must have an entry in @params and in the values)",
};
pub const IDENTIFIERS: Rule = Rule {
    id: "identifiers",
    says: "an identifier is at most 128 characters, a local temporary table's name at most 116",
    source:
        "https://learn.microsoft.com/en-us/sql/relational-databases/databases/database-identifiers",
};
pub const INDEX_KEY: Rule = Rule {
    id: "index-key",
    says: "an index key is at most 900 bytes clustered, 1,700 nonclustered, and holds no max or LOB column",
    source: "https://learn.microsoft.com/en-us/sql/sql-server/maximum-capacity-specifications-for-sql-server",
};
pub const ALONE_IN_BATCH: Rule = Rule {
    id: "alone-in-batch",
    says: "CREATE/ALTER VIEW, PROCEDURE, FUNCTION, TRIGGER and CREATE SCHEMA are the first statement of their request",
    source: "https://learn.microsoft.com/en-us/sql/t-sql/statements/create-view-transact-sql#remarks",
};
pub const BULK_COLUMNS: Rule = Rule {
    id: "bulk-columns",
    says: "INSERT BULK declares each column as its target does (nvarchar(n <= 2000) as nvarchar(2n) is the one accepted widening: same family, non-max, sent as the target's own type)",
    source: "https://github.com/prisma/tiberius/issues/234 (the server rejects a column list that misstates a column: \"invalid column attribute from bcp client\")",
};
pub const RENAME_OBJTYPE: Rule = Rule {
    id: "rename-objtype",
    says: "every sp_rename states its @objtype (N'OBJECT' for a table): with it NULL, a two-part [s].[t] is first read as the column or index t of a table s, which it would lock or rename instead",
    source: "https://learn.microsoft.com/en-us/sql/relational-databases/system-stored-procedures/sp-rename-transact-sql",
};
pub const LOCK_TIMEOUT_RESET: Rule = Rule {
    id: "lock-timeout-reset",
    says: "no request runs on a session with no open transaction whose LOCK_TIMEOUT is not its default (-1): a session outside a transaction may have gone back to the pool, and a bounded lock wait set (by a batch) for a schema change must not bound the next lease's work; reset it before the COMMIT (a failed change's session is discarded, never pooled; one set inside an RPC reverts when the RPC returns)",
    source: "https://learn.microsoft.com/en-us/sql/t-sql/statements/set-lock-timeout-transact-sql (the setting stays for the session's lifetime once set at run time); https://learn.microsoft.com/en-us/sql/t-sql/statements/set-statements-transact-sql (one set in a stored procedure, sp_executesql included, reverts when it returns)",
};

/// Every rule `check` applies.
pub const RULES: &[&Rule] = &[
    &TEMP_SCOPE,
    &SET_SCOPE,
    &RPC_TRANSACTION,
    &SNAPSHOT_DDL,
    &PARAMETERS,
    &BOUND_PARAMETERS,
    &IDENTIFIERS,
    &INDEX_KEY,
    &ALONE_IN_BATCH,
    &BULK_COLUMNS,
    &RENAME_OBJTYPE,
    &LOCK_TIMEOUT_RESET,
];

/// A broken rule at one request of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub rule: &'static str,
    /// Position of the request in the log.
    pub request: usize,
    pub message: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "[{}] request #{}: {}",
            self.rule, self.request, self.message
        )
    }
}

/// Options tracked per session (NOCOUNT only shapes its own request's
/// answer and is left out).
fn option_key(toks: &[Tok], i: usize) -> Option<(String, String, usize)> {
    let first = toks.get(i)?;
    if first.is("TRANSACTION") {
        let mut j = i + 3; // TRANSACTION ISOLATION LEVEL
        let mut value = Vec::new();
        while let Some(Tok::Word(w)) = toks.get(j) {
            value.push(w.to_uppercase());
            j += 1;
            if value.len() == 2 || value.last().is_some_and(|v| v == "SNAPSHOT") {
                break;
            }
        }
        return Some(("TRANSACTION ISOLATION LEVEL".into(), value.join(" "), j));
    }
    if first.is("IDENTITY_INSERT") {
        let (name, j) = dotted(toks, i + 1)?;
        let value = toks.get(j)?.name()?.to_uppercase();
        return Some((
            format!("IDENTITY_INSERT {}", object_key(&name)),
            value,
            j + 1,
        ));
    }
    match first {
        Tok::Word(w) if !w.starts_with('@') && !w.eq_ignore_ascii_case("NOCOUNT") => {
            let value = match toks.get(i + 1) {
                Some(Tok::Word(v)) => v.to_uppercase(),
                Some(Tok::Num(n)) => n.to_string(),
                Some(Tok::Sym('-')) => "-1".into(),
                _ => String::new(),
            };
            Some((w.to_uppercase(), value, i + 2))
        }
        _ => None,
    }
}

fn default_value(key: &str) -> &'static str {
    match key {
        "TRANSACTION ISOLATION LEVEL" => "READ COMMITTED",
        "LOCK_TIMEOUT" => "-1",
        k if k.starts_with("IDENTITY_INSERT") => "OFF",
        "XACT_ABORT" | "IMPLICIT_TRANSACTIONS" => "OFF",
        _ => "",
    }
}

#[derive(Default)]
struct SessionState {
    temps: HashSet<String>,
    trancount: u32,
    snapshot_tx: bool,
    options: HashMap<String, String>,
    /// Options an RPC set that reverted when it returned: the value it
    /// set and the request that set it.
    reverted: HashMap<String, (String, usize)>,
}

impl SessionState {
    fn option(&self, key: &str) -> String {
        self.options
            .get(key)
            .cloned()
            .unwrap_or_else(|| default_value(key).to_string())
    }
}

struct Checker<'a> {
    log: &'a [Request],
    sessions: HashMap<usize, SessionState>,
    /// Column sizes of every table created so far (temp tables per session).
    tables: HashMap<String, ColumnSizes>,
    out: Vec<Violation>,
}

const DDL_IN_SNAPSHOT: &[(&str, &str)] = &[
    ("ALTER", "TABLE"),
    ("ALTER", "INDEX"),
    ("DROP", "INDEX"),
    ("CREATE", "INDEX"),
    ("ALTER", "PARTITION"),
];

const MUST_LEAD: &[&str] = &["VIEW", "PROCEDURE", "PROC", "FUNCTION", "TRIGGER"];

/// Checks `log` against every rule in [`RULES`]; every session is taken
/// to go back to the pool when the log ends.
pub fn check(log: &[Request]) -> Vec<Violation> {
    check_discarded(log, &[])
}

/// [`check`], with the sessions the adapter discarded (closed, never
/// pooled): a lock timeout left on one of those bounds no later work.
pub fn check_discarded(log: &[Request], discarded: &[usize]) -> Vec<Violation> {
    let mut c = Checker {
        log,
        sessions: HashMap::new(),
        tables: HashMap::new(),
        out: Vec::new(),
    };
    let mut last: HashMap<usize, usize> = HashMap::new();
    for (i, r) in log.iter().enumerate() {
        c.request(i, r);
        if r.call != Call::BulkRows {
            last.insert(r.session, i);
        }
    }
    c.lock_timeouts_left(&last, discarded);
    c.out
}

/// The `n` of `@Pn` (tiberius names an RPC's parameters `@P1`, `@P2`, …).
fn parameter_number(word: &str) -> Option<usize> {
    let digits = word
        .strip_prefix("@P")
        .or_else(|| word.strip_prefix("@p"))?;
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

impl Checker<'_> {
    fn bound_parameters(&mut self, i: usize, r: &Request, toks: &[Tok]) {
        let mut declared = HashSet::new();
        for (k, t) in toks.iter().enumerate() {
            let Tok::Word(w) = t else { continue };
            let Some(n) = parameter_number(w) else {
                continue;
            };
            if k > 0 && toks[k - 1].is("DECLARE") {
                declared.insert(n);
                continue;
            }
            let unbound = match r.call {
                Call::Rpc => n > r.params.len(),
                _ => !declared.contains(&n),
            };
            if unbound {
                self.flag(
                    &BOUND_PARAMETERS,
                    i,
                    format!("{w} used, {} parameters sent", r.params.len()),
                );
                return;
            }
        }
    }

    /// The end of the log: a session that goes back to the pool (not
    /// discarded) outside a transaction with its LOCK_TIMEOUT still set
    /// hands that bound to the next lease, whether or not the log shows
    /// that lease's request. Flagged at the session's last request (once:
    /// not again when that request was flagged for it already).
    fn lock_timeouts_left(&mut self, last: &HashMap<usize, usize>, discarded: &[usize]) {
        let mut sessions: Vec<(usize, usize)> = last.iter().map(|(s, i)| (*s, *i)).collect();
        sessions.sort_by_key(|&(_, i)| i);
        for (session, i) in sessions {
            if discarded.contains(&session) {
                continue;
            }
            let Some(state) = self.sessions.get(&session) else {
                continue;
            };
            let lock_timeout = state.option("LOCK_TIMEOUT");
            if state.trancount != 0 || lock_timeout == default_value("LOCK_TIMEOUT") {
                continue;
            }
            let flagged = self
                .out
                .iter()
                .any(|v| v.rule == LOCK_TIMEOUT_RESET.id && v.request == i);
            if !flagged {
                self.flag(
                    &LOCK_TIMEOUT_RESET,
                    i,
                    format!(
                        "the session ends the log with no open transaction (it goes back to \
                         the pool) and its LOCK_TIMEOUT still {lock_timeout}"
                    ),
                );
            }
        }
    }

    fn flag(&mut self, rule: &Rule, request: usize, message: String) {
        self.out.push(Violation {
            rule: rule.id,
            request,
            message,
        });
    }

    fn request(&mut self, i: usize, r: &Request) {
        if r.call == Call::BulkRows {
            return;
        }
        if r.call == Call::Rpc && r.params.len() + 2 > 2_100 {
            self.flag(
                &PARAMETERS,
                i,
                format!("{} parameters (+ @stmt and @params)", r.params.len()),
            );
        }
        let toks = lex(&r.sql);
        self.bound_parameters(i, r, &toks);
        self.identifiers(i, &toks);
        self.alone_in_batch(i, &toks);
        self.rename_objtype(i, &toks);
        if !r.target.is_empty() {
            self.bulk_columns(i, r);
        }
        let mut state = self.sessions.remove(&r.session).unwrap_or_default();
        self.relied_on(i, r, &toks, &mut state);
        let lock_timeout = state.option("LOCK_TIMEOUT");
        if state.trancount == 0 && lock_timeout != default_value("LOCK_TIMEOUT") {
            // An RPC's own SET LOCK_TIMEOUT never gets here: it reverted
            // when that RPC returned.
            self.flag(
                &LOCK_TIMEOUT_RESET,
                i,
                format!(
                    "runs on a session with no open transaction (a lease that may have come \
                     back from the pool) whose LOCK_TIMEOUT is still {lock_timeout}"
                ),
            );
        }
        let start_options = state.options.clone();
        let start_trancount = state.trancount;
        let mut created_here: HashSet<String> = HashSet::new();
        let mut dropped_here: HashSet<String> = HashSet::new();
        let mut prev_word = String::new();
        let mut k = 0;
        while k < toks.len() {
            let t = &toks[k];
            if t.is("SET") {
                if let Some((key, value, next)) = option_key(&toks, k + 1) {
                    state.options.insert(key, value);
                    k = next;
                    continue;
                }
            }
            if t.is("BEGIN")
                && toks
                    .get(k + 1)
                    .is_some_and(|n| n.is("TRAN") || n.is("TRANSACTION") || n.is("DISTRIBUTED"))
            {
                if state.trancount == 0 {
                    state.snapshot_tx = state.option("TRANSACTION ISOLATION LEVEL") == "SNAPSHOT";
                }
                state.trancount += 1;
            }
            if t.is("COMMIT") {
                state.trancount = state.trancount.saturating_sub(1);
            }
            if t.is("ROLLBACK") {
                state.trancount = 0;
            }
            if state.trancount > 0 && state.snapshot_tx {
                for (verb, object) in DDL_IN_SNAPSHOT {
                    if t.is(verb) && self.ddl_object(&toks, k + 1, object) {
                        self.flag(
                            &SNAPSHOT_DDL,
                            i,
                            format!("{verb} {object} inside a SNAPSHOT transaction"),
                        );
                    }
                }
            }
            if t.is("CREATE") {
                self.created(i, &toks, k, r.session, &mut created_here);
            }
            if t.is("DROP") && toks.get(k + 1).is_some_and(|n| n.is("TABLE")) {
                let mut j = k + 2;
                if toks.get(j).is_some_and(|n| n.is("IF")) {
                    j += 2;
                }
                if let Some((name, next)) = dotted(&toks, j) {
                    if name.starts_with('#') {
                        created_here.remove(&name);
                        state.temps.remove(&name);
                        dropped_here.insert(name);
                    }
                    k = next;
                    prev_word = "DROP".into();
                    continue;
                }
            }
            if let Tok::Word(w) = t {
                if w.starts_with('#') {
                    let name = w.to_lowercase();
                    let into = prev_word.eq_ignore_ascii_case("INTO")
                        && !toks[..k.saturating_sub(1)]
                            .iter()
                            .rev()
                            .find_map(|t| match t {
                                Tok::Word(w) => Some(w.to_uppercase()),
                                _ => None,
                            })
                            .is_some_and(|w| w == "INSERT" || w == "MERGE");
                    if into {
                        created_here.insert(name.clone());
                    } else if !created_here.contains(&name) && !state.temps.contains(&name) {
                        let why = if dropped_here.contains(&name) {
                            "after this request dropped it".to_string()
                        } else {
                            self.where_it_died(r.session, i, &name)
                        };
                        self.flag(&TEMP_SCOPE, i, format!("uses {name} {why}"));
                    }
                }
                prev_word = w.clone();
            }
            k += 1;
        }
        match r.call {
            Call::Rpc => {
                // SET CONTEXT_INFO is the one SET that outlives the module
                // that ran it (SET CONTEXT_INFO, Remarks).
                let context = state.options.get("CONTEXT_INFO").cloned();
                for (key, value) in state.options.clone() {
                    if key == "CONTEXT_INFO" {
                        continue;
                    }
                    let before = start_options
                        .get(&key)
                        .cloned()
                        .unwrap_or_else(|| default_value(&key).to_string());
                    if value != before {
                        state.reverted.insert(key.clone(), (value, i));
                    }
                }
                state.options = start_options;
                if let Some(value) = context {
                    state.options.insert("CONTEXT_INFO".into(), value);
                }
                if state.trancount != start_trancount {
                    self.flag(
                        &RPC_TRANSACTION,
                        i,
                        format!(
                            "the RPC began with {start_trancount} open transactions and ends with {}",
                            state.trancount
                        ),
                    );
                }
            }
            Call::Batch => {
                for key in state.options.keys() {
                    state.reverted.remove(key);
                }
                state.temps.extend(created_here);
            }
            Call::BulkRows => {}
        }
        self.sessions.insert(r.session, state);
    }

    fn ddl_object(&self, toks: &[Tok], mut j: usize, object: &str) -> bool {
        // CREATE [UNIQUE] [CLUSTERED | NONCLUSTERED] [XML] INDEX
        while let Some(t) = toks.get(j) {
            if t.is(object) {
                return true;
            }
            if !(t.is("UNIQUE") || t.is("CLUSTERED") || t.is("NONCLUSTERED") || t.is("XML")) {
                return false;
            }
            j += 1;
        }
        false
    }

    fn where_it_died(&self, session: usize, upto: usize, name: &str) -> String {
        let created_in_rpc = self.log[..upto].iter().rposition(|r| {
            r.session == session
                && r.call == Call::Rpc
                && lex(&r.sql).windows(3).any(|w| {
                    w[0].is("CREATE")
                        && w[1].is("TABLE")
                        && w[2].name().map(str::to_lowercase).as_deref() == Some(name)
                })
        });
        match created_in_rpc {
            Some(at) => format!("created inside the RPC #{at}, which dropped it when it returned"),
            None => "which no earlier batch of this session created".into(),
        }
    }

    /// `CREATE TABLE` (its columns and primary key) and `CREATE INDEX`.
    fn created(
        &mut self,
        i: usize,
        toks: &[Tok],
        k: usize,
        session: usize,
        created_here: &mut HashSet<String>,
    ) {
        let scoped = |name: &str| {
            if name.starts_with('#') {
                format!("{session}:{name}")
            } else {
                object_key(name)
            }
        };
        if toks.get(k + 1).is_some_and(|t| t.is("TABLE")) {
            let Some((name, open)) = dotted(toks, k + 2) else {
                return;
            };
            if name.starts_with('#') {
                created_here.insert(name.clone());
            }
            if toks.get(open) != Some(&Tok::Sym('(')) {
                return;
            }
            let (columns, pk) = table_definition(toks, open);
            if let Some((keys, clustered)) = pk {
                self.key_size(i, &name, &columns, &keys, clustered);
            }
            self.tables.insert(scoped(&name), columns);
            return;
        }
        let mut j = k + 1;
        let mut clustered = false;
        while let Some(t) = toks.get(j) {
            if t.is("CLUSTERED") {
                clustered = true;
            } else if !(t.is("UNIQUE") || t.is("NONCLUSTERED")) {
                break;
            }
            j += 1;
        }
        if !toks.get(j).is_some_and(|t| t.is("INDEX")) {
            return;
        }
        let on = toks[j..].iter().position(|t| t.is("ON")).map(|p| p + j);
        let Some((table, open)) = on.and_then(|on| dotted(toks, on + 1)) else {
            return;
        };
        let mut keys = Vec::new();
        let mut m = open + 1;
        while let Some(t) = toks.get(m) {
            if *t == Tok::Sym(')') {
                break;
            }
            if matches!(toks.get(m - 1), Some(Tok::Sym('(') | Tok::Sym(','))) {
                if let Some(n) = t.name() {
                    keys.push(n.to_lowercase());
                }
            }
            m += 1;
        }
        if let Some(columns) = self.tables.get(&scoped(&table)).cloned() {
            self.key_size(i, &table, &columns, &keys, clustered);
        }
    }

    fn key_size(
        &mut self,
        i: usize,
        table: &str,
        columns: &ColumnSizes,
        keys: &[String],
        clustered: bool,
    ) {
        let limit = if clustered { 900 } else { 1_700 };
        let mut total = 0u32;
        for key in keys {
            match columns.get(key) {
                Some(Some(n)) => total += n,
                Some(None) => {
                    self.flag(
                        &INDEX_KEY,
                        i,
                        format!("index key column {key} of {table} is max, LOB or computed"),
                    );
                    return;
                }
                None => return, // not declared in the log: nothing to check
            }
        }
        if total > limit {
            self.flag(
                &INDEX_KEY,
                i,
                format!(
                    "the {} key of {table} can take {total} bytes (limit {limit})",
                    if clustered {
                        "clustered"
                    } else {
                        "nonclustered"
                    }
                ),
            );
        }
    }

    fn identifiers(&mut self, i: usize, toks: &[Tok]) {
        for t in toks {
            let (name, temp) = match t {
                Tok::Ident(n) => (n.as_str(), n.starts_with('#')),
                Tok::Word(w) => (w.as_str(), w.starts_with('#') && !w.starts_with("##")),
                _ => continue,
            };
            let len = name.chars().count();
            if len > 128 || (temp && len > 116) {
                self.flag(
                    &IDENTIFIERS,
                    i,
                    format!(
                        "an identifier of {len} characters ({}…)",
                        name.chars().take(20).collect::<String>()
                    ),
                );
            }
        }
    }

    /// An `sp_rename` whose arguments (up to the statement's end: `;`, the
    /// text's end, or the next statement's keyword) are fewer than three.
    fn rename_objtype(&mut self, i: usize, toks: &[Tok]) {
        const NEXT: &[&str] = &[
            "END", "IF", "ELSE", "EXEC", "EXECUTE", "SELECT", "UPDATE", "INSERT", "DELETE", "DROP",
            "SET", "BEGIN", "COMMIT", "ROLLBACK", "DECLARE", "CREATE", "ALTER",
        ];
        for (k, t) in toks.iter().enumerate() {
            let named = t.name().is_some_and(|n| {
                n.eq_ignore_ascii_case("sp_rename") || n.to_lowercase().ends_with(".sp_rename")
            });
            if !named {
                continue;
            }
            let commas = toks[k + 1..]
                .iter()
                .take_while(|t| **t != Tok::Sym(';') && !NEXT.iter().any(|w| t.is(w)))
                .filter(|t| **t == Tok::Sym(','))
                .count();
            if commas < 2 {
                self.flag(&RENAME_OBJTYPE, i, "sp_rename without @objtype".to_string());
            }
        }
    }

    fn alone_in_batch(&mut self, i: usize, toks: &[Tok]) {
        let lead = toks.iter().position(|t| *t != Tok::Sym(';')).unwrap_or(0);
        for (k, t) in toks.iter().enumerate() {
            let or_alter = t.is("ALTER") && k > 0 && toks[k - 1].is("OR");
            if !(t.is("CREATE") || t.is("ALTER")) || or_alter {
                continue;
            }
            let mut j = k + 1;
            if toks.get(j).is_some_and(|n| n.is("OR"))
                && toks.get(j + 1).is_some_and(|n| n.is("ALTER"))
            {
                j += 2;
            }
            let Some(object) = toks.get(j) else { continue };
            let must_lead =
                MUST_LEAD.iter().any(|m| object.is(m)) || (t.is("CREATE") && object.is("SCHEMA"));
            if must_lead && k != lead {
                self.flag(
                    &ALONE_IN_BATCH,
                    i,
                    format!(
                        "{} {} is not the first statement of its request",
                        if t.is("CREATE") { "CREATE" } else { "ALTER" },
                        object.name().unwrap_or_default().to_uppercase()
                    ),
                );
            }
        }
    }

    /// An option an earlier RPC set (and SQL Server reverted) that this
    /// request relies on without setting it itself first.
    fn relied_on(&mut self, i: usize, r: &Request, toks: &[Tok], state: &mut SessionState) {
        if state.reverted.is_empty() {
            return;
        }
        let mut set_first = HashSet::new();
        let mut k = 0;
        while toks
            .get(k)
            .is_some_and(|t| t.is("SET") || *t == Tok::Sym(';'))
        {
            if toks[k].is("SET") {
                match option_key(toks, k + 1) {
                    Some((key, _, next)) => {
                        set_first.insert(key);
                        k = next;
                        continue;
                    }
                    None => break,
                }
            }
            k += 1;
        }
        let words: Vec<String> = toks
            .iter()
            .filter_map(|t| match t {
                Tok::Word(w) => Some(w.to_uppercase()),
                _ => None,
            })
            .collect();
        let has = |w: &str| words.iter().any(|x| x == w);
        let begins = toks
            .windows(2)
            .any(|p| p[0].is("BEGIN") && (p[1].is("TRAN") || p[1].is("TRANSACTION")));
        let reverted: Vec<(String, (String, usize))> = state.reverted.drain().collect();
        for (key, (value, at)) in reverted {
            if set_first.contains(&key) {
                continue;
            }
            let relies = if let Some(table) = key.strip_prefix("IDENTITY_INSERT ") {
                toks.windows(2).enumerate().any(|(p, w)| {
                    w[0].is("INSERT")
                        && (w[1].is("INTO") || w[1].name().is_some())
                        && dotted(toks, if w[1].is("INTO") { p + 2 } else { p + 1 })
                            .is_some_and(|(n, _)| object_key(&n) == table)
                })
            } else if key == "TRANSACTION ISOLATION LEVEL" {
                begins || has("SELECT")
            } else if key == "XACT_ABORT" {
                begins || state.trancount > 0
            } else {
                true
            };
            if relies {
                self.flag(
                    &SET_SCOPE,
                    i,
                    format!(
                        "runs as if SET {key} {value} (set inside the RPC #{at}) still held; SQL Server reverted it when that RPC returned"
                    ),
                );
            } else {
                state.reverted.insert(key, (value, at));
            }
        }
        let _ = r;
    }

    fn bulk_columns(&mut self, i: usize, r: &Request) {
        let Some(open) = r.sql.find('(') else { return };
        let Some(close) = r.sql.rfind(')') else {
            return;
        };
        let list = match r.sql.find(" WITH (") {
            Some(w) if w > open => &r.sql[open + 1..r.sql[..w].rfind(')').unwrap_or(close)],
            _ => &r.sql[open + 1..close],
        };
        let mut items = Vec::new();
        let mut depth = 0;
        let mut start = 0;
        for (p, c) in list.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                ',' if depth == 0 => {
                    items.push(list[start..p].trim());
                    start = p + 1;
                }
                _ => {}
            }
        }
        items.push(list[start..].trim());
        for (item, (column, declared)) in items.iter().zip(&r.target) {
            let rendered = item.rsplit_once(']').map(|(_, t)| t.trim()).unwrap_or(item);
            if !bulk_type_ok(rendered, declared) {
                self.flag(
                    &BULK_COLUMNS,
                    i,
                    format!(
                        "column [{column}] is {declared} but INSERT BULK declares it {rendered}"
                    ),
                );
            }
        }
    }
}

/// `ty` normalized: lowercase, no spaces, default precision or scale made
/// explicit.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lexer_keeps_strings_and_bracketed_names_apart() {
        let toks = lex("SELECT N'#not_a_table', [a]]b] FROM #t -- #comment\n/* #x */");
        assert_eq!(
            toks,
            vec![
                Tok::Word("SELECT".into()),
                Tok::Str,
                Tok::Sym(','),
                Tok::Ident("a]b".into()),
                Tok::Word("FROM".into()),
                Tok::Word("#t".into()),
            ]
        );
    }

    #[test]
    fn bulk_types_compare_after_normalizing() {
        assert!(bulk_type_ok("time", "time(7)"));
        assert!(!bulk_type_ok("time", "time(3)"));
        assert!(bulk_type_ok("float", "float(53)"));
        assert!(bulk_type_ok("nvarchar(100)", "nvarchar(50)"));
        assert!(!bulk_type_ok("nvarchar(max)", "nvarchar(2001)"));
        assert!(!bulk_type_ok("nchar(20)", "nchar(10)"));
        assert!(!bulk_type_ok("datetime", "smalldatetime"));
        assert!(bulk_type_ok("decimal(10,2)", "decimal(10, 2)"));
    }
}
