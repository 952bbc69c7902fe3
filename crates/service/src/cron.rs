//! Five-field cron expressions (UTC) for scheduled jobs (backups today).

/// A five-field cron expression (minute hour day-of-month month day-of-week), with `*`, `a`, `a-b`,
/// `*/n`, `a-b/n`, lists, and the `@yearly @monthly @weekly @daily @midnight @hourly` macros.
#[derive(Debug, PartialEq)]
pub struct Cron {
    fields: [Vec<bool>; 5],
}

impl Cron {
    pub fn parse(expr: &str) -> Option<Cron> {
        let expr = match expr.trim() {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            e => e,
        };
        let parts: Vec<&str> = expr.split_whitespace().collect();
        if parts.len() != 5 {
            return None;
        }
        let bounds = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 6)];
        let mut fields: [Vec<bool>; 5] = Default::default();
        for (i, p) in parts.iter().enumerate() {
            let (lo, hi) = bounds[i];
            let mut set = vec![false; hi + 1];
            for item in p.split(',') {
                let (range, step) = match item.split_once('/') {
                    Some((r, s)) => (r, s.parse::<usize>().ok().filter(|s| *s > 0)?),
                    None => (item, 1),
                };
                let (a, b) = if range == "*" {
                    (lo, hi)
                } else if let Some((a, b)) = range.split_once('-') {
                    (a.parse().ok()?, b.parse().ok()?)
                } else {
                    let a: usize = range.parse().ok()?;
                    (a, if item.contains('/') { hi } else { a })
                };
                if a < lo || b > hi || a > b {
                    return None;
                }
                for (v, slot) in set.iter_mut().enumerate().take(b + 1).skip(a) {
                    if (v - a) % step == 0 {
                        *slot = true;
                    }
                }
            }
            fields[i] = set;
        }
        Some(Cron { fields })
    }

    pub fn matches(&self, t: &chrono::DateTime<chrono::Utc>) -> bool {
        use chrono::{Datelike, Timelike};
        let v = [
            t.minute() as usize,
            t.hour() as usize,
            t.day() as usize,
            t.month() as usize,
            t.weekday().num_days_from_sunday() as usize,
        ];
        v.iter()
            .zip(self.fields.iter())
            .all(|(v, f)| f.get(*v).copied().unwrap_or(false))
    }
}
