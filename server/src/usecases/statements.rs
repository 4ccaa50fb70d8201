//! Reconciling a provider's daily bill against paybridge's books (DESIGN.md, "Statements").
//!
//! A run reads the bill once, streaming, never holding it in memory:
//! 1. it first reads the orders paybridge saw paid that Beijing day into a compact table (see
//!    `day_book`: a prefix of the day's walk by `orders_tenant_paid`, up to 2²⁰ orders);
//! 2. it parses the bill and decides each line: most payment lines in memory against that
//!    table, every other line (a refund, a difference of any kind, an order not held) in
//!    batches against the orders and refunds they name (one index lookup per batch). The
//!    differences are written as they are found;
//! 3. only once the whole bill was read and its summary agrees with its lines does it change
//!    anything: it heals what can be healed (a payment paybridge holds as pending is asked of the
//!    provider and applied as a notification would be; never from the bill alone) and records
//!    the fees. A bill that disagrees with itself (or is cut short, or malformed) fails the run,
//!    which then keeps no difference, heals nothing and records no fee;
//! 4. it reports the orders of the day the bill did not hold (those of the table it never saw,
//!    then the day's orders past the table), and the refunds paybridge saw succeed that it did
//!    not hold.
//!
//! The day's orders are those paid when the run starts: a payment paybridge learns of during a
//! run is judged by the next one. Lines decided the full way are remembered as 128-bit digests.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use chrono::NaiveDate;
use paybridge_core::statement::{
    BillError, BillLine, BillLineKind, BillSource, BillSummary, DiscrepancyKind, LineVerdict,
    OrderFacts, RefundFacts, classify_payment, classify_refund,
};
use paybridge_core::tenant::Tenant;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::Failure;
use super::day_book::DayBook;
use crate::db::entities::{refund, statement};
use crate::state::AppState;
use crate::store::orders::status_of;
use crate::store::statements::{self as store, BeginError, NewDiscrepancy, RunEnd};

/// Lines matched per batch (one lookup and one write each).
const BATCH: usize = 1000;

/// The share of the core (and of the writer) a run takes while the gateway is writing other
/// things (payments): after each step it sleeps `(1 - SHARE) / SHARE` times the step's time.
const SHARE: f64 = 0.08;

/// Keeps a run to [`SHARE`] of a busy gateway: "busy" is the writer having run jobs other than
/// the run's own since the last step. An idle gateway runs it at full speed.
struct Pacer {
    stats: Arc<crate::store::writer::WriteStats>,
    seen: u64,
    step: std::time::Instant,
}

impl Pacer {
    fn new(stats: Arc<crate::store::writer::WriteStats>) -> Pacer {
        let seen = stats.jobs.load(std::sync::atomic::Ordering::Relaxed);
        Pacer {
            stats,
            seen,
            step: std::time::Instant::now(),
        }
    }

    /// The end of a step that wrote `own` jobs: how long to rest.
    fn rest(&mut self, own: u64) -> std::time::Duration {
        let jobs = self.stats.jobs.load(std::sync::atomic::Ordering::Relaxed);
        let others = jobs.saturating_sub(self.seen).saturating_sub(own);
        self.seen = jobs;
        let took = self.step.elapsed();
        if others == 0 {
            return std::time::Duration::ZERO;
        }
        took.mul_f64((1.0 - SHARE) / SHARE)
    }

    /// The end of a step on the runtime: rest, or at least yield. A step whose reads are
    /// SQLite's (run in this thread, never pending) would otherwise run the next one at once, and
    /// the requests waiting on this thread would not run: the writer, given nothing else to do,
    /// reads as idle, and a whole walk of the day ran without a pause (measured: a wait of up to
    /// 0.73 s for every payment in flight, at the start of the day's walk).
    async fn step(&mut self, own: u64) {
        let rest = self.rest(own);
        if rest.is_zero() {
            tokio::task::yield_now().await;
        } else {
            tokio::time::sleep(rest).await;
        }
        self.step = std::time::Instant::now();
    }

    /// The same, on a blocking thread.
    fn step_blocking(&mut self, own: u64) {
        let rest = self.rest(own);
        if !rest.is_zero() {
            std::thread::sleep(rest);
        }
        self.step = std::time::Instant::now();
    }
}

/// Opens the bill from its start (it is read more than once).
pub type OpenBill = dyn Fn() -> std::io::Result<Box<dyn BillSource>> + Send + Sync;

/// A provider's bill parser: hands each line to the callback, returns the checked summary.
pub type ParseBill = dyn Fn(
        &mut dyn BillSource,
        &mut dyn FnMut(BillLine) -> Result<(), BillError>,
    ) -> Result<BillSummary, BillError>
    + Send
    + Sync;

fn digest(parts: &[&str]) -> u128 {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    let d = h.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&d[..16]);
    u128::from_le_bytes(bytes)
}

fn bill_json(line: &BillLine) -> Value {
    json!({
        "amount": line.amount.get(),
        "settled": line.settled.get(),
        "status": line.status,
        "refund_status": line.refund_status,
        "fee": line.fee_fen,
        "time": line.time,
    })
}

/// What a run found so far.
#[derive(Default)]
struct Tally {
    seen: HashSet<u128>,
    counts: BTreeMap<&'static str, i64>,
    line_discrepancies: i64,
}

impl Tally {
    fn count(&mut self, kind: DiscrepancyKind, from_a_line: bool) {
        *self.counts.entry(kind.as_str()).or_default() += 1;
        if from_a_line {
            self.line_discrepancies += 1;
        }
    }
}

/// What a run keeps for after the whole bill was read: nothing changes an order or a refund
/// before the bill is trusted.
#[derive(Default)]
struct Deferred {
    /// Fees of matched payment lines decided the full way, by `out_trade_no`.
    fees: Vec<(String, i64)>,
    /// Fees returned on matched refund lines.
    returned: Vec<(String, String, i64)>,
    /// Payment lines of orders paybridge holds as pending, to ask the provider about.
    heals: Vec<(BillLine, store::OrderLine)>,
}

/// Decide a batch of lines the full way (those the day's table could not): their differences,
/// to be written now; fees and heals are kept in `deferred`, and the orders found in `seen`
/// (number, id) for the day's table.
async fn match_batch(
    state: &AppState,
    tenant: &Tenant,
    provider: &str,
    lines: Vec<BillLine>,
    tally: &mut Tally,
    seen: &mut Vec<(String, String)>,
    deferred: &mut Deferred,
) -> Result<Vec<NewDiscrepancy>, Failure> {
    let db = state.store.reader();
    let numbers: Vec<String> = lines
        .iter()
        .filter(|l| l.kind == BillLineKind::Payment)
        .map(|l| l.out_trade_no.clone())
        .collect();
    let refund_numbers: Vec<String> = lines
        .iter()
        .filter_map(|l| l.out_refund_no.clone())
        .collect();
    let orders: HashMap<String, store::OrderLine> = if numbers.is_empty() {
        HashMap::new()
    } else {
        store::orders_by_number(db, &tenant.id, numbers)
            .await?
            .into_iter()
            .filter(|o| o.provider == provider)
            .map(|o| (o.out_trade_no.clone(), o))
            .collect()
    };
    let refunds: HashMap<(String, String), refund::Model> = if refund_numbers.is_empty() {
        HashMap::new()
    } else {
        store::refunds_by_number(db, &tenant.id, refund_numbers)
            .await?
            .into_iter()
            .map(|r| ((r.out_trade_no.clone(), r.out_refund_no.clone()), r))
            .collect()
    };
    let mut found = Vec::new();
    for line in lines {
        match line.kind {
            BillLineKind::Payment => {
                tally.seen.insert(digest(&["p", &line.out_trade_no]));
                let order = orders.get(&line.out_trade_no);
                if let Some(o) = order {
                    seen.push((o.out_trade_no.clone(), o.id.clone()));
                }
                let facts = match order {
                    Some(o) => Some(OrderFacts {
                        status: o.status.parse().map_err(|e: String| {
                            Failure::internal(&crate::store::StoreError::Corrupt(e))
                        })?,
                        amount: paybridge_core::money::Fen::new(o.amount),
                        provider_trade_no: o.provider_trade_no.clone(),
                    }),
                    None => None,
                };
                let kind = match (classify_payment(&line, facts.as_ref()), order) {
                    (LineVerdict::Matched, _) => {
                        if order.is_some() && line.status != "REVOKED" {
                            deferred
                                .fees
                                .push((line.out_trade_no.clone(), line.fee_fen));
                        }
                        continue;
                    }
                    (LineVerdict::Discrepancy(kind), _) => kind,
                    (LineVerdict::Heal, Some(o)) => {
                        deferred.heals.push((line, o.clone()));
                        continue;
                    }
                    (LineVerdict::Heal, None) => DiscrepancyKind::ProviderOnly,
                };
                tally.count(kind, true);
                found.push(NewDiscrepancy {
                    kind: kind.as_str(),
                    out_trade_no: line.out_trade_no.clone(),
                    out_refund_no: None,
                    provider_trade_no: Some(line.provider_trade_no.clone()),
                    healed: false,
                    bill: Some(bill_json(&line)),
                    paybridge: order.map(|o| json!({"amount": o.amount, "status": o.status})),
                });
            }
            BillLineKind::Refund => {
                let out_refund_no = line.out_refund_no.clone().unwrap_or_default();
                tally
                    .seen
                    .insert(digest(&["r", &line.out_trade_no, &out_refund_no]));
                let refund = refunds.get(&(line.out_trade_no.clone(), out_refund_no.clone()));
                let facts = match refund {
                    Some(r) => Some(RefundFacts {
                        status: r.status.parse().map_err(|e: String| {
                            Failure::internal(&crate::store::StoreError::Corrupt(e))
                        })?,
                        amount: paybridge_core::money::Fen::new(r.amount),
                    }),
                    None => None,
                };
                match classify_refund(&line, facts.as_ref()) {
                    LineVerdict::Matched => {
                        deferred.returned.push((
                            line.out_trade_no.clone(),
                            out_refund_no,
                            -line.fee_fen,
                        ));
                    }
                    LineVerdict::Discrepancy(kind) => {
                        tally.count(kind, true);
                        found.push(NewDiscrepancy {
                            kind: kind.as_str(),
                            out_trade_no: line.out_trade_no.clone(),
                            out_refund_no: Some(out_refund_no),
                            provider_trade_no: Some(line.provider_trade_no.clone()),
                            healed: false,
                            bill: Some(bill_json(&line)),
                            paybridge: refund
                                .map(|r| json!({"amount": r.amount, "status": r.status})),
                        });
                    }
                    // Refunds are never healed from a bill.
                    LineVerdict::Heal => {}
                }
            }
        }
    }
    Ok(found)
}

/// Ask the provider about a payment paybridge holds as pending and apply its answer; whether
/// the order is paid afterwards.
async fn heal(state: &AppState, tenant: &Tenant, o: &store::OrderLine) -> bool {
    let found =
        crate::store::orders::find_order(state.store.reader(), &tenant.id, &o.out_trade_no).await;
    let o = match found {
        Ok(Some(o)) => o,
        Ok(None) => return false,
        Err(e) => {
            tracing::warn!(tenant = %tenant.id, out_trade_no = %o.out_trade_no, error = %e, "statement: cannot read a payment to heal");
            return false;
        }
    };
    match super::orders::sync_order(state, tenant, &o).await {
        Ok(after) => status_of(&after).is_ok_and(|s| s.is_paid()),
        Err(e) => {
            tracing::warn!(tenant = %tenant.id, out_trade_no = %o.out_trade_no, error = %e.message, "statement: cannot heal a payment");
            false
        }
    }
}

/// Orders of the day read per page.
const WALK_PAGE: u64 = 1000;

/// Where the day's orders that the table does not hold begin: `None` when it holds them all,
/// `Some(None)` when it holds none, `Some(Some(after))` after a `(paid_at, id)`.
type Rest = Option<Option<(chrono::DateTime<chrono::Utc>, String)>>;

/// A page of the orders paybridge saw paid that day, after `after` (`None`: from the start).
async fn day_page(
    state: &AppState,
    tenant: &Tenant,
    provider: &str,
    range: (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>),
    after: &Option<(chrono::DateTime<chrono::Utc>, String)>,
) -> Result<Vec<store::OrderLine>, Failure> {
    let after = after.clone();
    let db = state.store.reader();
    Ok(store::paid_between(db, &tenant.id, provider, range, after, WALK_PAGE).await?)
}

/// Read the orders paybridge saw paid that day into the run's table, while they fit.
async fn read_day(
    state: &AppState,
    tenant: &Tenant,
    provider: &str,
    range: (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>),
) -> Result<(DayBook, Rest), Failure> {
    let mut book = DayBook::default();
    let mut after = None;
    let mut pacer = Pacer::new(state.store.shared_write_stats());
    let rest = loop {
        pacer.step(0).await;
        let mut corrupt = None;
        let mut take = |o: store::PaidOrder<'_>| {
            let status = match o.status.parse() {
                Ok(s) => s,
                Err(e) => {
                    corrupt = Some(e);
                    return false;
                }
            };
            let amount = paybridge_core::money::Fen::new(o.amount);
            book.add(o.id, o.out_trade_no, o.provider_trade_no, amount, status)
        };
        let page = store::each_paid_between(
            &state.store,
            &tenant.id,
            provider,
            range,
            after.clone(),
            WALK_PAGE,
            &mut take,
        )
        .await?;
        if let Some(e) = corrupt {
            return Err(Failure::internal(&crate::store::StoreError::Corrupt(e)));
        }
        if let Some(last) = page.last_taken {
            after = Some(last);
        }
        if page.refused {
            break Some(after);
        }
        if page.read < WALK_PAGE {
            break None;
        }
    };
    read_recorded_fees(state, &mut book).await?;
    Ok((book, rest))
}

/// The fees already recorded for the orders held (a re-run of a day writes only those that
/// differ): one pass over `order_fees` between the lowest and the highest id held.
async fn read_recorded_fees(state: &AppState, book: &mut DayBook) -> Result<(), Failure> {
    let Some((first, last)) = book.ids() else {
        return Ok(());
    };
    let mut after: Option<String> = None;
    let mut pacer = Pacer::new(state.store.shared_write_stats());
    loop {
        pacer.step(0).await;
        let mut each = |id: &str, fee: i64| book.recorded_fee(id, fee);
        let (read, last_id) = store::each_fee_between(
            &state.store,
            (&first, &last),
            after.as_deref(),
            WALK_PAGE,
            &mut each,
        )
        .await?;
        if read < WALK_PAGE {
            break;
        }
        after = last_id;
    }
    book.fees_read();
    Ok(())
}

fn paybridge_only_order(o: &store::OrderLine) -> NewDiscrepancy {
    NewDiscrepancy {
        kind: DiscrepancyKind::PaybridgeOnly.as_str(),
        out_trade_no: o.out_trade_no.clone(),
        out_refund_no: None,
        provider_trade_no: o.provider_trade_no.clone(),
        healed: false,
        bill: None,
        paybridge: Some(json!({"amount": o.amount, "status": o.status})),
    }
}

/// The orders paybridge saw paid that day, and the refunds it saw succeed, that the bill did not
/// hold: written in batches.
async fn paybridge_only(
    state: &AppState,
    tenant: &Tenant,
    row: &statement::Model,
    range: (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>),
    (book, rest): (&DayBook, Rest),
    tally: &mut Tally,
) -> Result<(), Failure> {
    let provider = row.provider.as_str();
    let db = state.store.reader();
    let mut pacer = Pacer::new(state.store.shared_write_stats());
    // The orders of the table that no line named.
    let unseen: Vec<String> = book.unseen().collect();
    for ids in unseen.chunks(BATCH) {
        let mut by_id: HashMap<String, store::OrderLine> =
            store::orders_by_id(db, &tenant.id, ids.to_vec())
                .await?
                .into_iter()
                .map(|o| (o.id.clone(), o))
                .collect();
        let found: Vec<NewDiscrepancy> = ids
            .iter()
            .filter_map(|id| by_id.remove(id))
            .map(|o| paybridge_only_order(&o))
            .collect();
        for _ in &found {
            tally.count(DiscrepancyKind::PaybridgeOnly, false);
        }
        write_batch(state, row, found, Vec::new(), Vec::new()).await?;
        pacer.step(1).await;
    }
    // The day's orders past the table: their lines were all decided the full way.
    if let Some(mut after) = rest {
        loop {
            pacer.step(0).await;
            let page = day_page(state, tenant, provider, range, &after).await?;
            let mut found = Vec::new();
            for o in &page {
                if !tally.seen.contains(&digest(&["p", &o.out_trade_no])) {
                    tally.count(DiscrepancyKind::PaybridgeOnly, false);
                    found.push(paybridge_only_order(o));
                }
            }
            write_batch(state, row, found, Vec::new(), Vec::new()).await?;
            match page.last() {
                Some(o) if u64::try_from(page.len()).unwrap_or(0) == WALK_PAGE => {
                    after = o.paid_at.map(|at| (at, o.id.clone()));
                }
                _ => break,
            }
        }
    }
    let mut after = None;
    loop {
        let page = store::refunded_between(db, &tenant.id, range, after, 1000).await?;
        let numbers = page.iter().map(|r| r.out_trade_no.clone()).collect();
        let ours: HashSet<String> = store::orders_by_number(db, &tenant.id, numbers)
            .await?
            .into_iter()
            .filter(|o| o.provider == provider)
            .map(|o| o.out_trade_no)
            .collect();
        let mut found = Vec::new();
        for r in page.iter().filter(|r| ours.contains(&r.out_trade_no)) {
            if r.status == "succeeded"
                && !tally
                    .seen
                    .contains(&digest(&["r", &r.out_trade_no, &r.out_refund_no]))
            {
                tally.count(DiscrepancyKind::PaybridgeOnly, false);
                found.push(NewDiscrepancy {
                    kind: DiscrepancyKind::PaybridgeOnly.as_str(),
                    out_trade_no: r.out_trade_no.clone(),
                    out_refund_no: Some(r.out_refund_no.clone()),
                    provider_trade_no: None,
                    healed: false,
                    bill: None,
                    paybridge: Some(json!({"amount": r.amount, "status": r.status})),
                });
            }
        }
        write_batch(state, row, found, Vec::new(), Vec::new()).await?;
        match page.last() {
            Some(r) if page.len() == 1000 => {
                after = r.succeeded_at.map(|at| (at, r.id.clone()));
            }
            _ => break,
        }
    }
    Ok(())
}

/// A statement as the merchant's `statement.reconciled` event and the admin list show it:
/// without the discrepancy list, with the counts by kind.
pub fn statement_json(s: &statement::Model) -> Value {
    let mut v = json!({
        "tenant": s.tenant_id,
        "provider": s.provider,
        "date": s.day,
        "status": s.status,
        "version": s.version,
        "totals": {
            "gross": s.gross, "refunds": s.refunds, "fees": s.fees, "net": s.net,
            "lines": s.lines, "matched": s.matched,
        },
        "discrepancies": serde_json::from_str::<Value>(&s.counts).unwrap_or_else(|_| json!({})),
        "updated_at": s.updated_at,
    });
    if let Some(reason) = &s.reason {
        v["reason"] = json!(reason);
    }
    v
}

/// End a run: the statement and the run show it, and a reconciled run sends the merchant
/// `statement.reconciled`, in the same write. Counted in the metrics.
async fn end_run(
    state: &AppState,
    row: &statement::Model,
    end: RunEnd,
) -> Result<statement::Model, Failure> {
    let [lines, matched, gross, refunds, fees, net] = end.totals;
    let now = crate::store::now();
    let after = statement::Model {
        status: end.status.to_owned(),
        reason: end.reason.clone(),
        lines,
        matched,
        gross,
        refunds,
        fees,
        net,
        counts: end.counts.to_string(),
        updated_at: now,
        ..row.clone()
    };
    let event = (end.status == "reconciled").then(|| statement_json(&after).to_string());
    let (id, version, tenant_id) = (row.id.clone(), row.version, row.tenant_id.clone());
    let counts = end.counts.clone();
    state
        .store
        .write(move |txn| {
            Box::pin(async move {
                store::finish_run(txn, &id, version, &end, now).await?;
                if let Some(data) = event {
                    crate::store::events::write_tenant_event(
                        txn,
                        &tenant_id,
                        "statement.reconciled",
                        &data,
                        now,
                    )
                    .await?;
                }
                Ok::<_, crate::store::StoreError>(())
            })
        })
        .await?;
    state.metrics.statement(&row.provider, after_status(&after));
    if after.status == "reconciled" {
        state.metrics.statement_lines(
            &row.provider,
            "matched",
            u64::try_from(matched).unwrap_or(0),
        );
        if let Some(by_kind) = counts.as_object() {
            for (kind, n) in by_kind {
                state
                    .metrics
                    .statement_lines(&row.provider, kind, n.as_u64().unwrap_or(0));
            }
        }
    }
    Ok(after)
}

fn after_status(s: &statement::Model) -> &'static str {
    match s.status.as_str() {
        "reconciled" => "reconciled",
        "not_ready" => "not_ready",
        _ => "failed",
    }
}

async fn write_batch(
    state: &AppState,
    row: &statement::Model,
    found: Vec<NewDiscrepancy>,
    fees: Vec<(String, i64)>,
    returned: Vec<(String, String, i64)>,
) -> Result<(), Failure> {
    if found.is_empty() && fees.is_empty() && returned.is_empty() {
        return Ok(());
    }
    let (id, version, tenant_id) = (row.id.clone(), row.version, row.tenant_id.clone());
    state
        .store
        .write(move |txn| {
            Box::pin(async move {
                store::insert_discrepancies(txn, &id, version, found).await?;
                store::set_fees(txn, &tenant_id, fees, returned).await
            })
        })
        .await?;
    Ok(())
}

/// Parse the bill, deciding the payment lines the day's table can decide; hand the others on in
/// batches. Runs on a blocking thread, paced as a step of the run every [`BATCH`] lines.
fn read_bill(
    bill: &Bill,
    book: &mut DayBook,
    pacer: &mut Pacer,
    tx: &tokio::sync::mpsc::Sender<Vec<BillLine>>,
) -> Result<BillSummary, BillError> {
    let stopped = |_| BillError::Io("the run stopped".to_owned());
    let mut reader = (bill.open)().map_err(|e| BillError::Io(e.to_string()))?;
    let mut slow = Vec::with_capacity(BATCH);
    let mut read = 0usize;
    let summary = (bill.parse)(&mut reader, &mut |line| {
        if line.kind != BillLineKind::Payment || !book.settle(&line) {
            slow.push(line);
        }
        if slow.len() >= BATCH {
            let full = std::mem::replace(&mut slow, Vec::with_capacity(BATCH));
            tx.blocking_send(full).map_err(stopped)?;
        }
        read += 1;
        if read.is_multiple_of(BATCH) {
            pacer.step_blocking(0);
        }
        Ok(())
    })?;
    if !slow.is_empty() {
        tx.blocking_send(slow).map_err(stopped)?;
    }
    Ok(summary)
}

/// Read the bill once and decide its lines: in memory against the day's table where it can
/// (on the parser's thread), the full way in batches where it cannot. Its differences are
/// written as they are found (a failed run drops them); fees and heals wait in `deferred`. The
/// table comes back with the orders the bill named; `Err(_)` inside: the bill cannot be trusted.
async fn match_bill(
    state: &AppState,
    tenant: &Tenant,
    (row, bill): (&statement::Model, Bill),
    mut book: DayBook,
    tally: &mut Tally,
    deferred: &mut Deferred,
) -> Result<(DayBook, Result<BillSummary, BillError>), Failure> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<BillLine>>(2);
    let stats = state.store.shared_write_stats();
    let mut parser_pacer = Pacer::new(stats.clone());
    let reading = tokio::task::spawn_blocking(move || {
        let read = read_bill(&bill, &mut book, &mut parser_pacer, &tx);
        (book, read)
    });
    let mut pacer = Pacer::new(stats);
    let mut seen = Vec::new();
    while let Some(lines) = rx.recv().await {
        let found = match_batch(
            state,
            tenant,
            &row.provider,
            lines,
            tally,
            &mut seen,
            deferred,
        )
        .await?;
        let own = u64::from(!found.is_empty());
        write_batch(state, row, found, Vec::new(), Vec::new()).await?;
        pacer.step(own).await;
    }
    let (mut book, read) = match reading.await {
        Ok(done) => done,
        Err(e) => (
            DayBook::default(),
            Err(BillError::Io(format!("the parser stopped: {e}"))),
        ),
    };
    for (out_trade_no, id) in seen {
        book.see(&out_trade_no, &id);
    }
    Ok((book, read))
}

/// Apply what a trusted bill gave: heal the payments paybridge holds as pending (each one
/// asked of the provider), then record the fees, in batches.
async fn apply(
    state: &AppState,
    tenant: &Tenant,
    row: &statement::Model,
    book: &DayBook,
    tally: &mut Tally,
    deferred: Deferred,
) -> Result<(), Failure> {
    let Deferred {
        mut fees,
        returned,
        heals,
    } = deferred;
    let mut found = Vec::new();
    for (line, o) in heals {
        let healed = heal(state, tenant, &o).await;
        if healed {
            // Paid now, by the provider's own answer: the line's fee is its fee.
            fees.push((line.out_trade_no.clone(), line.fee_fen));
        }
        tally.count(DiscrepancyKind::ProviderOnly, true);
        found.push(NewDiscrepancy {
            kind: DiscrepancyKind::ProviderOnly.as_str(),
            out_trade_no: line.out_trade_no.clone(),
            out_refund_no: None,
            provider_trade_no: Some(line.provider_trade_no.clone()),
            healed,
            bill: Some(bill_json(&line)),
            paybridge: Some(json!({"amount": o.amount, "status": o.status})),
        });
    }
    let mut pacer = Pacer::new(state.store.shared_write_stats());
    for part in found.chunks(BATCH) {
        write_batch(state, row, part.to_vec(), Vec::new(), Vec::new()).await?;
        pacer.step(1).await;
    }
    for part in fees.chunks(BATCH) {
        write_batch(state, row, Vec::new(), part.to_vec(), Vec::new()).await?;
        pacer.step(1).await;
    }
    for part in returned.chunks(BATCH) {
        write_batch(state, row, Vec::new(), Vec::new(), part.to_vec()).await?;
        pacer.step(1).await;
    }
    let mut held = book.fees();
    loop {
        let part: Vec<(String, i64)> = held.by_ref().take(BATCH).collect();
        if part.is_empty() {
            break;
        }
        state
            .store
            .write(move |txn| Box::pin(async move { store::set_fees_by_id(txn, part).await }))
            .await?;
        pacer.step(1).await;
    }
    Ok(())
}

/// A downloaded bill: how to read it from its start, and its provider's parser.
#[derive(Clone)]
pub struct Bill {
    /// Opens the file.
    pub open: Arc<OpenBill>,
    /// Parses it.
    pub parse: Arc<ParseBill>,
}

/// Reconcile a tenant's bill of one provider and Beijing day (`None`: the provider has no
/// trade that day): a new run of its statement. A run of that day still in progress is
/// answered as it is, never started twice.
pub async fn reconcile(
    state: &AppState,
    tenant: &Tenant,
    provider: &str,
    day: NaiveDate,
    bill: Option<Bill>,
) -> Result<statement::Model, Failure> {
    match begin(state, tenant, provider, day).await? {
        Begun::Started(row) => reconcile_begun(state, tenant, &row, day, bill).await,
        Begun::Running(row) => Ok(row),
    }
}

/// A run that was asked for.
#[derive(Debug)]
pub enum Begun {
    /// A new run, `running`: the caller carries it on.
    Started(statement::Model),
    /// A run of that day already in progress: answered as it is.
    Running(statement::Model),
}

/// Start a new run of a day's statement, unless one is in progress.
pub async fn begin(
    state: &AppState,
    tenant: &Tenant,
    provider: &str,
    day: NaiveDate,
) -> Result<Begun, Failure> {
    let (tenant_id, kind, day_key) = (
        tenant.id.clone(),
        provider.to_owned(),
        day.format("%Y-%m-%d").to_string(),
    );
    let began = state
        .store
        .write(move |txn| {
            Box::pin(async move {
                store::begin_run(txn, &tenant_id, &kind, &day_key, crate::store::now()).await
            })
        })
        .await;
    match began {
        Ok(row) => Ok(Begun::Started(row)),
        Err(BeginError::Running(row)) => Ok(Begun::Running(row)),
        Err(BeginError::Store(e)) => Err(e.into()),
    }
}

/// Carry on a started run with its bill.
async fn reconcile_begun(
    state: &AppState,
    tenant: &Tenant,
    row: &statement::Model,
    day: NaiveDate,
    bill: Option<Bill>,
) -> Result<statement::Model, Failure> {
    let range = paybridge_core::beijing::day_range(day)
        .ok_or_else(|| Failure::invalid("date", "not a day"))?;
    let mut tally = Tally::default();
    // Held until the day's table is dropped. Never closed: an error here is a bug.
    let turn = state
        .statement_runs
        .acquire()
        .await
        .map_err(|e| Failure::internal(&e))?;
    let started = std::time::Instant::now();
    let (book, rest) = read_day(state, tenant, &row.provider, range).await?;
    let day_read = started.elapsed();
    let (book, summary) = match bill {
        Some(bill) => {
            let mut deferred = Deferred::default();
            let (book, read) =
                match_bill(state, tenant, (row, bill), book, &mut tally, &mut deferred).await?;
            tracing::info!(
                tenant = %tenant.id, provider = %row.provider, %day,
                day_read_ms = day_read.as_millis(),
                bill_read_ms = (started.elapsed() - day_read).as_millis(),
                "statement: the day's orders and the bill were read"
            );
            match read {
                Ok(summary) => {
                    apply(state, tenant, row, &book, &mut tally, deferred).await?;
                    (book, summary)
                }
                Err(e) => return end_run(state, row, ended("failed", e.to_string())).await,
            }
        }
        None => (book, BillSummary::default()),
    };
    // What paybridge saw that the bill does not hold.
    paybridge_only(state, tenant, row, range, (&book, rest), &mut tally).await?;
    drop(book);
    drop(turn);
    let lines = i64::try_from(summary.lines).unwrap_or(i64::MAX);
    let end = RunEnd {
        status: "reconciled",
        reason: None,
        totals: [
            lines,
            lines - tally.line_discrepancies,
            summary.gross_fen,
            summary.refunds_fen,
            summary.fees_fen,
            summary.gross_fen - summary.refunds_fen - summary.fees_fen,
        ],
        counts: json!(tally.counts),
    };
    end_run(state, row, end).await
}

/// Ask the tenant's provider for the day's bill and reconcile it: a new run of the statement.
/// A bill not made yet leaves the statement `not_ready`; a provider that refuses, `failed` with
/// its reason. A run of that day in progress is answered as it is.
pub async fn run(
    state: &AppState,
    tenant: &Tenant,
    kind: &str,
    day: NaiveDate,
) -> Result<statement::Model, Failure> {
    match begin(state, tenant, kind, day).await? {
        Begun::Started(row) => carry_on(state, tenant, &row, day).await,
        Begun::Running(row) => Ok(row),
    }
}

/// Removes a downloaded bill's temporary file when the run is over.
struct TempBill(std::path::PathBuf);

impl Drop for TempBill {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Carry on a started run: download the bill and reconcile it.
pub async fn carry_on(
    state: &AppState,
    tenant: &Tenant,
    row: &statement::Model,
    day: NaiveDate,
) -> Result<statement::Model, Failure> {
    let Some(provider) = tenant.any_provider(&row.provider).cloned() else {
        return end_run(
            state,
            row,
            ended("failed", "the provider is no longer configured".to_owned()),
        )
        .await;
    };
    let path = std::env::temp_dir().join(format!("paybridge-bill-{}", uuid::Uuid::new_v4()));
    let guard = TempBill(path.clone());
    let download = {
        let provider = provider.clone();
        async move {
            let mut file = std::fs::File::create(&path)
                .map_err(|e| paybridge_core::provider::ProviderError::Unavailable(e.to_string()))?;
            let got = provider.download_bill(day, &mut file).await?;
            use std::io::Write;
            file.flush()
                .and_then(|()| file.sync_all())
                .map_err(|e| paybridge_core::provider::ProviderError::Unavailable(e.to_string()))?;
            Ok(got)
        }
    };
    let downloaded =
        super::activity::call(state, provider.as_ref(), "download_bill", None, download).await;
    let bill = match downloaded {
        Ok(paybridge_core::statement::BillDownload::Written) => {
            if let Err(e) = keep(state, row, guard.0.clone()).await {
                return end_run(
                    state,
                    row,
                    ended("failed", format!("cannot keep the bill: {e}")),
                )
                .await;
            }
            let open_path = guard.0.clone();
            let parser = provider.clone();
            Some(Bill {
                open: Arc::new(move || {
                    let file = std::fs::File::open(&open_path)?;
                    let reader: Box<dyn BillSource> = Box::new(std::io::BufReader::new(file));
                    Ok(reader)
                }),
                parse: Arc::new(move |r, each| parser.parse_bill(r, each)),
            })
        }
        Ok(paybridge_core::statement::BillDownload::Empty) => None,
        Ok(paybridge_core::statement::BillDownload::NotReady(why)) => {
            return end_run(state, row, ended("not_ready", why)).await;
        }
        Err(e) => return end_run(state, row, ended("failed", e.to_string())).await,
    };
    let done = reconcile_begun(state, tenant, row, day, bill).await;
    drop(guard);
    done
}

/// The raw bill is kept in parts of this many bytes of the file, each compressed on its own.
const FILE_PART: usize = 4 << 20;

/// Read a file in parts of `part_size` bytes, each handed on gzipped (one gzip member each: the
/// parts in order are the file as a multi-member gzip); the SHA-256 (hex) and size of the whole.
fn split_into_parts(
    mut file: impl std::io::Read,
    part_size: usize,
    each: &mut dyn FnMut(Vec<u8>) -> Result<(), String>,
) -> Result<(String, u64), String> {
    use std::io::Write;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; part_size.max(1)];
    let mut size = 0u64;
    loop {
        // Fill the part (a read may return less).
        let mut filled = 0;
        while filled < buf.len() {
            let n = file.read(&mut buf[filled..]).map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 {
            break;
        }
        let part = &buf[..filled];
        size += u64::try_from(filled).unwrap_or(0);
        hash.update(part);
        // The fast level: a bill is text of few symbols (still about 7:1).
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(part).map_err(|e| e.to_string())?;
        each(encoder.finish().map_err(|e| e.to_string())?)?;
    }
    Ok((hex::encode(hash.finalize()), size))
}

/// Keep the run's raw bill compressed, in parts (each a gzip member of 4 MiB of the file, written
/// as it is made: at most a part is in memory), then the SHA-256 and size of the file as
/// downloaded.
async fn keep(
    state: &AppState,
    row: &statement::Model,
    path: std::path::PathBuf,
) -> Result<(), String> {
    let mut pacer = Pacer::new(state.store.shared_write_stats());
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(1);
    let reading = tokio::task::spawn_blocking(move || {
        let file = std::fs::File::open(&path).map_err(|e| e.to_string())?;
        split_into_parts(file, FILE_PART, &mut |gzip| {
            // Between two parts, the run wrote the one before (its own job, not a payment's).
            pacer.step_blocking(1);
            tx.blocking_send(gzip)
                .map_err(|_| "the run stopped".to_owned())
        })
    });
    let mut part = 0i64;
    while let Some(gzip) = rx.recv().await {
        let (id, version) = (row.id.clone(), row.version);
        state
            .store
            .write(move |txn| {
                Box::pin(async move { store::keep_file_part(txn, &id, version, part, gzip).await })
            })
            .await
            .map_err(|e| e.to_string())?;
        part += 1;
    }
    let (sha256, size) = reading.await.map_err(|e| e.to_string())??;
    let (id, version) = (row.id.clone(), row.version);
    let size = i64::try_from(size).unwrap_or(i64::MAX);
    state
        .store
        .write(move |txn| {
            Box::pin(async move {
                store::keep_file(txn, &id, version, sha256, size, crate::store::now()).await
            })
        })
        .await
        .map_err(|e| e.to_string())
}

/// A run that ended without a reconciliation.
fn ended(status: &'static str, reason: String) -> RunEnd {
    RunEnd {
        status,
        reason: Some(reason),
        totals: [0; 6],
        counts: json!({}),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;

    /// A file kept in parts reads back whole, byte for byte, as one multi-member gzip.
    #[test]
    fn a_file_kept_in_parts_reads_back_whole() {
        let text: Vec<u8> = (0..10_000u32)
            .flat_map(|i| format!("`{i},`line {}\r\n", i * 7919).into_bytes())
            .collect();
        let mut parts = Vec::new();
        let (sha, size) = split_into_parts(text.as_slice(), 30_000, &mut |p| {
            parts.push(p);
            Ok(())
        })
        .unwrap();
        assert_eq!(parts.len(), text.len().div_ceil(30_000));
        assert!(parts.len() > 3);
        assert_eq!(size, u64::try_from(text.len()).unwrap());
        assert_eq!(sha, hex::encode(Sha256::digest(&text)));
        let joined = parts.concat();
        let mut back = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::MultiGzDecoder::new(joined.as_slice()),
            &mut back,
        )
        .unwrap();
        assert_eq!(back, text);
    }

    /// A step that need not rest still lets the other tasks of its thread run.
    #[test]
    fn a_step_without_rest_still_yields() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let stats = Arc::new(crate::store::writer::WriteStats::default());
            let mut pacer = Pacer::new(stats);
            let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let flag = ran.clone();
            let other = tokio::spawn(async move { flag.store(true, Ordering::SeqCst) });
            // Idle: no rest; the other task runs all the same.
            pacer.step(0).await;
            assert!(ran.load(Ordering::SeqCst));
            other.await.unwrap();
        });
    }

    /// A run rests only when the writer ran jobs other than its own, and then for (1 − s)/s of
    /// its step.
    #[test]
    fn a_run_rests_only_while_others_write() {
        let stats = Arc::new(crate::store::writer::WriteStats::default());
        let mut pacer = Pacer::new(stats.clone());
        // Its own write only: idle, no rest.
        stats.jobs.fetch_add(1, Ordering::Relaxed);
        assert_eq!(pacer.rest(1), std::time::Duration::ZERO);
        // Payments were written meanwhile: rest in proportion to the step.
        pacer.step = std::time::Instant::now() - std::time::Duration::from_millis(80);
        stats.jobs.fetch_add(4, Ordering::Relaxed);
        let rest = pacer.rest(1);
        let want = std::time::Duration::from_millis(80).mul_f64((1.0 - SHARE) / SHARE);
        assert!(rest >= want && rest < want * 2, "{rest:?} for {want:?}");
        // Nothing since: idle again.
        assert_eq!(pacer.rest(0), std::time::Duration::ZERO);
    }
}
