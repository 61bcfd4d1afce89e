//! F2 benchmark: the desired count of 1000 presets with 3 schedules each, at one instant.
//! Run with `scripts/bench schedule` (release build).

use std::hint::black_box;
use std::time::Instant;

use chrono::{TimeZone, Utc};
use coder::prebuilds::schedule::{desired_instances, Scheduling};

const ZONES: [&str; 5] = [
    "UTC",
    "America/New_York",
    "Europe/Berlin",
    "Asia/Kolkata",
    "Australia/Lord_Howe",
];
const PRESETS: usize = 1000;
const REPETITIONS: u32 = 200;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let build = Instant::now();
    let pools = (0..PRESETS)
        .map(|i| {
            let split = 9 + (i % 8);
            let schedules = vec![
                (format!("* 0-{} * * 1-5", split - 1), 2),
                (format!("* {split}-23 * * 1-5"), 5),
                ("* * * * 0,6".to_owned(), 0),
            ];
            Scheduling::parse(ZONES[i % ZONES.len()], &schedules)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let build = build.elapsed();
    let at = Utc
        .with_ymd_and_hms(2025, 3, 10, 14, 30, 0)
        .single()
        .ok_or("bad instant")?;
    let mut sweeps = Vec::with_capacity(REPETITIONS as usize);
    let mut total: i64 = 0;
    for _ in 0..REPETITIONS {
        let start = Instant::now();
        for pool in &pools {
            total += i64::from(desired_instances(
                black_box(1),
                Some(black_box(pool)),
                black_box(at),
            ));
        }
        sweeps.push(start.elapsed());
    }
    sweeps.sort();
    let median = sweeps[sweeps.len() / 2];
    println!(
        "schedule evaluation: {PRESETS} presets x 3 schedules, parse+validate all {:.2} ms; desired count for all at one instant: median {:.1} µs, max {:.1} µs over {REPETITIONS} sweeps (checksum {total})",
        build.as_secs_f64() * 1e3,
        median.as_secs_f64() * 1e6,
        sweeps[sweeps.len() - 1].as_secs_f64() * 1e6,
    );
    Ok(())
}
