//! The orders paybridge saw paid on one Beijing day, held for a statement run in a compact table
//! (56 bytes an order, and about 10 bytes of index: about 66 MB for 10⁶ orders).
//!
//! A run reads them once, by the index of the day's payments, before it reads the bill, so that
//! most payment lines are decided in memory: the line's `out_trade_no` finds its order, and the
//! trade number, amount and state are compared. Anything else (a number that finds no order, a
//! difference of any kind, an order that is not held) goes the full way, to the database.
//!
//! Numbers are held as 64-bit SipHash digests with a key drawn for each run, not as text. Two
//! numbers of one day with the same digest are both held, and a line that finds two orders goes
//! the full way; a line is matched here only if its trade number's digest equals the order's
//! too. A false match would need two independent 64-bit collisions on secret keys.

use std::hash::BuildHasher;

use paybridge_core::money::Fen;
use paybridge_core::order::OrderStatus;
use paybridge_core::statement::{BillLine, held_as_settled};

/// The most orders a run holds. Past them, the day's remaining orders are checked against the
/// bill the full way (see `usecases::statements`).
pub const LIMIT: usize = 1 << 20;

/// No fee recorded for the order.
const NO_FEE: i64 = i64::MIN;

/// One order of the day.
struct Entry {
    /// Digest of its `out_trade_no`.
    key: u64,
    /// Digest of its provider trade number (`has_trade`).
    trade: u64,
    amount: i64,
    /// Its fee: the one it had (or [`NO_FEE`]), then the one its bill line gave it.
    fee: i64,
    /// Its id: a UUID, as bytes.
    id: [u8; 16],
    status: OrderStatus,
    has_trade: bool,
    /// The bill holds a line of it.
    seen: bool,
    /// Its bill line gave it another fee than the one it had: to be written.
    fee_changed: bool,
    /// Another order held has a number with the same digest.
    shared: bool,
}

/// Entries held in chunks of [`CHUNK`], each allocated once at its full size: a table of 10⁶
/// orders grows without ever moving (a `Vec` doubling copies 30 MB into 60 MB, and mimalloc, the
/// gateway's allocator, keeps what it freed for a while: measured +101 to +113 MiB of peak RSS in
/// a run of 10⁶ lines against +74 MiB in chunks).
#[derive(Default)]
struct Entries {
    chunks: Vec<Vec<Entry>>,
    len: usize,
}

/// Entries in one chunk (56 bytes each: under 1 MB a chunk).
const CHUNK: usize = 1 << 14;

impl Entries {
    fn len(&self) -> usize {
        self.len
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn push(&mut self, entry: Entry) {
        match self.chunks.last_mut() {
            Some(chunk) if chunk.len() < CHUNK => chunk.push(entry),
            _ => {
                let mut chunk = Vec::with_capacity(CHUNK);
                chunk.push(entry);
                self.chunks.push(chunk);
            }
        }
        self.len += 1;
    }

    fn get(&self, i: usize) -> Option<&Entry> {
        self.chunks.get(i / CHUNK)?.get(i % CHUNK)
    }

    fn get_mut(&mut self, i: usize) -> Option<&mut Entry> {
        self.chunks.get_mut(i / CHUNK)?.get_mut(i % CHUNK)
    }

    fn iter(&self) -> impl Iterator<Item = &Entry> + '_ {
        self.chunks.iter().flatten()
    }
}

impl std::ops::Index<usize> for Entries {
    type Output = Entry;

    fn index(&self, i: usize) -> &Entry {
        &self.chunks[i / CHUNK][i % CHUNK]
    }
}

impl std::ops::IndexMut<usize> for Entries {
    fn index_mut(&mut self, i: usize) -> &mut Entry {
        &mut self.chunks[i / CHUNK][i % CHUNK]
    }
}

/// The day's orders (see the module documentation).
pub struct DayBook {
    hasher: std::hash::RandomState,
    entries: Entries,
    /// Each entry's place in `entries`, by the digest of its number.
    index: hashbrown::HashTable<u32>,
    /// The places in `entries` in the order of their ids, while the recorded fees are read
    /// ([`DayBook::ids`] to [`DayBook::fees_read`]).
    by_id: Vec<u32>,
    /// Where in `by_id` the last recorded fee was found: they are read in id order, so the next
    /// one is most often a few places on (found by galloping from here, not by a search of the
    /// whole order, whose probes miss the cache).
    fee_cursor: usize,
    /// The entry after the last one a line settled: a bill lists its payments in time order,
    /// the day's orders were added in the order they were paid, so the next line's order is
    /// most often this one, found without the index.
    next: usize,
}

impl Default for DayBook {
    fn default() -> Self {
        DayBook {
            hasher: std::hash::RandomState::new(),
            entries: Entries::default(),
            index: hashbrown::HashTable::new(),
            by_id: Vec::new(),
            fee_cursor: 0,
            next: 0,
        }
    }
}

/// A place in the table, as the index and the id order hold it (a `u32`: [`LIMIT`] fits).
fn place(j: u32) -> usize {
    usize::try_from(j).unwrap_or(usize::MAX)
}

/// An order's id as a UUID, if it is one written the canonical way (so that it reads back the
/// same).
fn uuid_bytes(id: &str) -> Option<[u8; 16]> {
    let uuid = uuid::Uuid::try_parse(id).ok()?;
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    (uuid.hyphenated().encode_lower(&mut buf) == id).then_some(*uuid.as_bytes())
}

impl DayBook {
    /// Orders held.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Nothing held.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether it holds [`LIMIT`] orders.
    pub fn is_full(&self) -> bool {
        self.entries.len() >= LIMIT
    }

    fn digest(&self, s: &str) -> u64 {
        self.hasher.hash_one(s)
    }

    /// The entries whose number has this digest.
    fn positions(&self, key: u64) -> impl Iterator<Item = usize> + '_ {
        self.index
            .iter_hash(key)
            .map(|&n| place(n))
            .filter(move |&i| self.entries[i].key == key)
    }

    /// Hold an order (its recorded fee, if any, comes later: [`DayBook::recorded_fee`]). `false`
    /// (nothing held) when the book is full, or the id is no UUID: the caller checks that order
    /// the full way.
    pub fn add(
        &mut self,
        id: &str,
        out_trade_no: &str,
        provider_trade_no: Option<&str>,
        amount: Fen,
        status: OrderStatus,
    ) -> bool {
        let Some(id) = uuid_bytes(id) else {
            return false;
        };
        if self.is_full() {
            return false;
        }
        let key = self.digest(out_trade_no);
        self.entries.push(Entry {
            key,
            trade: provider_trade_no.map_or(0, |t| self.digest(t)),
            amount: amount.get(),
            fee: NO_FEE,
            id,
            status,
            has_trade: provider_trade_no.is_some(),
            seen: false,
            fee_changed: false,
            shared: false,
        });
        true
    }

    /// Index the entries added since the last call (all of them, the first time): the index is
    /// made once at its full size when the first line is looked up, not grown while the day is
    /// read (each time it doubled it rehashed every entry, reading each one's digest from the
    /// table: 7 % of the samples of a day's read of 10⁶ orders). Marks the entries whose numbers
    /// share a digest.
    fn index_new(&mut self) {
        let from = self.index.len();
        let len = self.entries.len();
        if from >= len {
            return;
        }
        let entries = &self.entries;
        self.index.reserve(len - from, |&j| entries[place(j)].key);
        for i in from..len {
            let key = self.entries[i].key;
            let held: Vec<usize> = self.positions(key).collect();
            for &h in &held {
                self.entries[h].shared = true;
            }
            self.entries[i].shared = !held.is_empty();
            // LIMIT fits a u32.
            let n = u32::try_from(i).unwrap_or(u32::MAX);
            let entries = &self.entries;
            self.index.insert_unique(key, n, |&j| entries[place(j)].key);
        }
    }

    /// Decide a payment line here if it can be: `true` when it finds exactly one order, which
    /// holds its trade number and matches it ([`held_as_settled`]); the order is then seen and
    /// keeps the line's fee. `false`: the line goes the full way.
    pub fn settle(&mut self, line: &BillLine) -> bool {
        self.index_new();
        let key = self.digest(&line.out_trade_no);
        let only = match self.entries.get(self.next) {
            Some(e) if e.key == key && !e.shared => Some(self.next),
            _ => {
                let mut found = self.positions(key);
                match (found.next(), found.next()) {
                    (Some(i), None) => Some(i),
                    _ => None,
                }
            }
        };
        let Some(i) = only else {
            return false;
        };
        let trade = self.digest(&line.provider_trade_no);
        let e = &mut self.entries[i];
        if !e.has_trade || e.trade != trade || !held_as_settled(line, e.status, Fen::new(e.amount))
        {
            return false;
        }
        e.seen = true;
        if e.fee != line.fee_fen {
            e.fee = line.fee_fen;
            e.fee_changed = true;
        }
        self.next = i + 1;
        true
    }

    /// The order with this number and id, found the full way, is in the bill.
    pub fn see(&mut self, out_trade_no: &str, id: &str) {
        let Some(id) = uuid_bytes(id) else {
            return;
        };
        self.index_new();
        let key = self.digest(out_trade_no);
        let held: Vec<usize> = self.positions(key).collect();
        for i in held {
            if self.entries[i].id == id {
                self.entries[i].seen = true;
            }
        }
    }

    /// The lowest and the highest id held (canonical UUID text), to read the fees recorded for
    /// the orders held ([`DayBook::recorded_fee`]); `None` when nothing is held.
    pub fn ids(&mut self) -> Option<(String, String)> {
        let entries = &self.entries;
        self.by_id = (0..u32::try_from(entries.len()).unwrap_or(u32::MAX)).collect();
        self.by_id
            .sort_unstable_by_key(|&j| entries.get(place(j)).map(|e| e.id));
        let text = |j: &u32| {
            let e = entries.get(place(*j))?;
            Some(uuid::Uuid::from_bytes(e.id).hyphenated().to_string())
        };
        Some((text(self.by_id.first()?)?, text(self.by_id.last()?)?))
    }

    /// The fee already recorded for order `id`, if it is held (anything else is left alone).
    pub fn recorded_fee(&mut self, id: &str, fee: i64) {
        let Some(id) = uuid_bytes(id) else {
            return;
        };
        let entries = &mut self.entries;
        let by_id = &self.by_id;
        let order = |j: &u32| {
            entries
                .get(place(*j))
                .map_or(std::cmp::Ordering::Greater, |e| e.id.cmp(&id))
        };
        // From the last place found, if this id is not before it (else from the start): double
        // the step until past the id, then search that last step.
        let mut lo = self.fee_cursor;
        if by_id
            .get(lo)
            .is_none_or(|j| order(j) == std::cmp::Ordering::Greater)
        {
            lo = 0;
        }
        let mut step = 1;
        let mut hi = lo;
        while let Some(j) = by_id.get(hi)
            && order(j) != std::cmp::Ordering::Greater
        {
            lo = hi;
            hi = hi.saturating_add(step);
            step = step.saturating_mul(2);
        }
        let window = by_id.get(lo..hi.min(by_id.len())).unwrap_or_default();
        let found = window.binary_search_by(order).map(|at| lo + at);
        if let Ok(at) = found {
            self.fee_cursor = at;
            if let Some(e) = by_id.get(at).and_then(|&j| entries.get_mut(place(j))) {
                e.fee = fee;
            }
        }
    }

    /// The recorded fees are read: the id order is no longer kept.
    pub fn fees_read(&mut self) {
        self.by_id = Vec::new();
        self.fee_cursor = 0;
    }

    /// The fees the bill gave the orders held, by order id, in the order they were added: only
    /// those that differ from the fee the order had (a re-run of a day writes none again).
    pub fn fees(&self) -> impl Iterator<Item = (String, i64)> + '_ {
        self.entries
            .iter()
            .filter(|e| e.fee_changed)
            .map(|e| (uuid::Uuid::from_bytes(e.id).to_string(), e.fee))
    }

    /// The ids of the orders held that the bill has no line of.
    pub fn unseen(&self) -> impl Iterator<Item = String> + '_ {
        self.entries
            .iter()
            .filter(|e| !e.seen)
            .map(|e| uuid::Uuid::from_bytes(e.id).to_string())
    }
}

#[cfg(test)]
mod tests {
    use paybridge_core::statement::BillLineKind;

    use super::*;

    fn line(no: &str, trade: &str, amount: i64, status: &str) -> BillLine {
        BillLine {
            kind: BillLineKind::Payment,
            out_trade_no: no.to_owned(),
            provider_trade_no: trade.to_owned(),
            out_refund_no: None,
            provider_refund_no: None,
            amount: Fen::new(amount),
            settled: Fen::new(amount),
            fee_fen: 3,
            status: status.to_owned(),
            refund_status: None,
            time: "2026-12-05 10:00:00".to_owned(),
        }
    }

    fn id(n: u128) -> String {
        uuid::Uuid::from_u128(n).to_string()
    }

    /// Hold order `n` (number `T{n}`, trade number `42{n}`), paid.
    fn add_paid(book: &mut DayBook, n: u128, amount: i64) -> bool {
        book.add(
            &id(n),
            &format!("T{n}"),
            Some(&format!("42{n}")),
            Fen::new(amount),
            OrderStatus::Paid,
        )
    }

    /// Many orders (the table grows several times): each line finds its own order, a line
    /// that differs in anything goes the full way, and what was not seen is reported.
    #[test]
    fn lines_find_their_orders_and_differences_go_the_full_way() {
        let mut book = DayBook::default();
        for n in 0..10_000u32 {
            let status = if n % 10 == 7 {
                OrderStatus::Closed
            } else {
                OrderStatus::Paid
            };
            assert!(book.add(
                &id(u128::from(n)),
                &format!("T{n}"),
                Some(&format!("42{n}")),
                Fen::new(i64::from(n) + 100),
                status,
            ));
        }
        assert_eq!(book.len(), 10_000);
        let mut settled = 0;
        for n in (0..10_000u32).filter(|n| n % 3 != 0) {
            let fine = line(
                &format!("T{n}"),
                &format!("42{n}"),
                i64::from(n) + 100,
                "SUCCESS",
            );
            if book.settle(&fine) {
                settled += 1;
            } else {
                // Only a closed order differs here.
                assert_eq!(n % 10, 7, "T{n}");
            }
        }
        // Another amount, another trade number, a reversed line, an unknown number.
        assert!(!book.settle(&line("T1", "421", 999, "SUCCESS")));
        assert!(!book.settle(&line("T1", "42999", 101, "SUCCESS")));
        assert!(!book.settle(&line("T1", "421", 101, "REVOKED")));
        assert!(!book.settle(&line("T99999", "4299999", 100, "SUCCESS")));
        // A line that went the full way and found its order.
        book.see("T3", &id(3));
        // The same number with another id is another order.
        book.see("T6", &id(7));
        let unseen: Vec<String> = book.unseen().collect();
        let closed_seen = (0..10_000u32).filter(|n| n % 3 != 0 && n % 10 == 7).count();
        assert_eq!(settled, 6_666 - closed_seen);
        assert_eq!(unseen.len(), 10_000 - settled - 1);
        assert!(!unseen.contains(&id(3)));
        assert!(unseen.contains(&id(6)));
        assert!(unseen.contains(&id(7)));
        let fees: Vec<(String, i64)> = book.fees().collect();
        assert_eq!(fees.len(), settled);
        assert_eq!(fees[0], (id(1), 3));
    }

    /// A table of more orders than a chunk holds: every order is found, in and across the
    /// chunks' edges, and reported once.
    #[test]
    fn orders_past_a_chunk_are_found() {
        let mut book = DayBook::default();
        let n = u32::try_from(2 * CHUNK + 7).unwrap();
        for k in 0..n {
            assert!(add_paid(&mut book, u128::from(k), i64::from(k) + 1));
        }
        assert_eq!(book.len(), usize::try_from(n).unwrap());
        assert_eq!(book.entries.chunks.len(), 3);
        // In order (the entry after the last one settled), then out of order (the index).
        for k in (0..n)
            .filter(|k| k % 5 != 0)
            .chain((0..n).filter(|k| k % 5 == 0).rev())
        {
            let fine = line(
                &format!("T{k}"),
                &format!("42{k}"),
                i64::from(k) + 1,
                "SUCCESS",
            );
            assert!(book.settle(&fine), "T{k}");
        }
        assert_eq!(book.unseen().count(), 0);
        let fees: Vec<(String, i64)> = book.fees().collect();
        assert_eq!(fees.len(), usize::try_from(n).unwrap());
        let last = usize::try_from(n - 1).unwrap();
        assert_eq!(fees[CHUNK], (id(u128::try_from(CHUNK).unwrap()), 3));
        assert_eq!(fees[last], (id(u128::from(n - 1)), 3));
        // An order past the first chunk keeps its recorded fee.
        let mut again = DayBook::default();
        for k in 0..n {
            assert!(add_paid(&mut again, u128::from(k), i64::from(k) + 1));
        }
        again.ids();
        again.recorded_fee(&id(u128::from(n - 1)), 3);
        again.fees_read();
        let k = n - 1;
        assert!(again.settle(&line(
            &format!("T{k}"),
            &format!("42{k}"),
            i64::from(k) + 1,
            "SUCCESS"
        )));
        assert_eq!(again.fees().count(), 0);
        again.see(
            &format!("T{}", CHUNK + 1),
            &id(u128::try_from(CHUNK + 1).unwrap()),
        );
        assert_eq!(again.unseen().count(), usize::try_from(n).unwrap() - 2);
    }

    /// Recorded fees read in id order (as the store gives them), with ids not held between
    /// them and a few out of order: each finds its order, wherever the last one was.
    #[test]
    fn recorded_fees_in_id_order_find_their_orders() {
        let mut book = DayBook::default();
        let n = 3 * u128::try_from(CHUNK).unwrap();
        // Added in another order than their ids' (paid order is not id order).
        for k in (0..n).map(|k| (k * 7_919) % n) {
            assert!(add_paid(&mut book, k * 2, 100));
        }
        book.ids();
        // Every third order's fee, ascending, with an id not held before each (odd ids).
        for k in (0..n).filter(|k| k % 3 == 0) {
            book.recorded_fee(&id(k * 2 + 1), 9);
            book.recorded_fee(&id(k * 2), 3);
        }
        // Then some out of order, and past the last.
        for k in [n - 1, 5, n - 2, 0] {
            book.recorded_fee(&id(k * 2), 3);
        }
        book.recorded_fee(&id(n * 2 + 10), 3);
        book.fees_read();
        for k in 0..n {
            let no = k * 2;
            assert!(book.settle(&line(&format!("T{no}"), &format!("42{no}"), 100, "SUCCESS")));
        }
        // Each line gives fee 3: only the orders without a recorded fee are written.
        let written: std::collections::BTreeSet<String> = book.fees().map(|(i, _)| i).collect();
        let expected: std::collections::BTreeSet<String> = (0..n)
            .filter(|k| k % 3 != 0 && ![n - 1, 5, n - 2].contains(k))
            .map(|k| id(k * 2))
            .collect();
        assert_eq!(written.len(), expected.len());
        assert_eq!(written, expected);
    }

    /// The fees already recorded are read by id (the orders' range, in any order, with ids of
    /// orders not held): an order whose line gives the same fee is not written again.
    #[test]
    fn recorded_fees_are_not_written_again() {
        let mut book = DayBook::default();
        // Added out of id order, as a day's payments can be.
        for n in [5u128, 2, 9, 7] {
            assert!(add_paid(&mut book, n, 100));
        }
        assert_eq!(book.ids(), Some((id(2), id(9))));
        book.recorded_fee(&id(7), 3);
        book.recorded_fee(&id(2), 4);
        book.recorded_fee(&id(6), 3);
        book.recorded_fee("not-a-uuid", 3);
        book.fees_read();
        for n in [5u128, 2, 9, 7] {
            assert!(book.settle(&line(&format!("T{n}"), &format!("42{n}"), 100, "SUCCESS")));
        }
        // Each line gives fee 3: 7 had it, 2 had another, 5 and 9 had none.
        let fees: Vec<(String, i64)> = book.fees().collect();
        assert_eq!(fees, vec![(id(5), 3), (id(2), 3), (id(9), 3)]);
        assert_eq!(DayBook::default().ids(), None);
    }

    /// Two orders under one digest are both held, and a line that finds both goes the full way.
    #[test]
    fn a_line_that_finds_two_orders_goes_the_full_way() {
        let mut book = DayBook::default();
        for n in 0..2u128 {
            assert!(book.add(&id(n), "T1", Some("421"), Fen::new(100), OrderStatus::Paid));
        }
        assert!(!book.settle(&line("T1", "421", 100, "SUCCESS")));
        book.see("T1", &id(1));
        assert_eq!(book.unseen().collect::<Vec<_>>(), vec![id(0)]);
    }

    /// The index is made when the first line is looked up: orders held after that are indexed
    /// too, and a later order with the digest of one indexed earlier makes both go the full way.
    #[test]
    fn orders_held_after_a_line_are_found() {
        let mut book = DayBook::default();
        assert!(add_paid(&mut book, 1, 100));
        assert!(book.settle(&line("T1", "421", 100, "SUCCESS")));
        assert!(add_paid(&mut book, 2, 200));
        assert!(book.add(&id(3), "T1", Some("421"), Fen::new(100), OrderStatus::Paid));
        assert!(book.settle(&line("T2", "422", 200, "SUCCESS")));
        assert!(!book.settle(&line("T1", "421", 100, "SUCCESS")));
        assert_eq!(book.unseen().collect::<Vec<_>>(), vec![id(3)]);
    }

    /// A fee the order already has is not written again; another one is.
    #[test]
    fn only_fees_that_change_are_written() {
        let mut book = DayBook::default();
        let orders = [(1u128, Some(3)), (2, Some(2)), (3, None)];
        for (n, _) in orders {
            assert!(add_paid(&mut book, n, 100));
        }
        book.ids();
        for (n, fee) in orders {
            if let Some(fee) = fee {
                book.recorded_fee(&id(n), fee);
            }
        }
        book.fees_read();
        for (n, _) in orders {
            // Every line's fee is 3.
            assert!(book.settle(&line(&format!("T{n}"), &format!("42{n}"), 100, "SUCCESS")));
        }
        let fees: Vec<(String, i64)> = book.fees().collect();
        assert_eq!(fees, vec![(id(2), 3), (id(3), 3)]);
    }

    /// An id that is no canonical UUID is not held: it would not read back the same.
    #[test]
    fn only_canonical_uuids_are_held() {
        let mut book = DayBook::default();
        let upper = id(0xab5).to_uppercase();
        assert_ne!(upper, id(0xab5));
        assert!(!book.add(&upper, "T5", None, Fen::new(1), OrderStatus::Paid));
        assert!(!book.add("ord_5", "T5", None, Fen::new(1), OrderStatus::Paid));
        assert!(book.is_empty());
        // Without a trade number an order is held, but never matched here.
        assert!(book.add(&id(0xab5), "T5", None, Fen::new(1), OrderStatus::Paid));
        assert!(!book.settle(&line("T5", "", 1, "SUCCESS")));
    }
}
