//! Figures of the Masstree arena (its pages, and the compaction the memory policy drives:
//! `server::policy`), for `/metrics`.

use hdrhistogram::Histogram;

/// Arena pages and compaction, summed over shards.
#[derive(Debug, Clone)]
pub struct ArenaMetrics {
    /// Arena pages present, border and interior (gauge, `ds_arena_pages`).
    pub pages: u64,
    /// Pages that packing the live nodes would free (gauge, `ds_arena_reclaimable_pages`).
    pub reclaimable_pages: u64,
    /// Pages released, by removal or compaction (`ds_arena_pages_released_total`).
    pub pages_released_total: u64,
    /// Bytes of those pages (`ds_arena_released_bytes_total`).
    pub released_bytes_total: u64,
    /// Nodes moved by compaction (`ds_arena_nodes_moved_total`).
    pub nodes_moved_total: u64,
    /// Compaction steps that moved a node or released a page
    /// (`ds_arena_compact_steps_total`).
    pub compact_steps_total: u64,
    /// Duration of such a step, µs (`ds_arena_compact_step_seconds`).
    pub step_us: Histogram<u64>,
}

impl Default for ArenaMetrics {
    fn default() -> Self {
        Self {
            pages: 0,
            reclaimable_pages: 0,
            pages_released_total: 0,
            released_bytes_total: 0,
            nodes_moved_total: 0,
            compact_steps_total: 0,
            step_us: Histogram::new_with_bounds(1, 60_000_000, 2)
                .expect("static histogram bounds are valid"),
        }
    }
}

impl ArenaMetrics {
    /// Copies the engine's arena figures (gauges and the counters the tree keeps).
    pub fn set_from(&mut self, s: &engines::masstree::ArenaStats) {
        self.pages = s.pages as u64;
        self.reclaimable_pages = s.reclaimable_pages as u64;
        self.pages_released_total = s.pages_released_total;
        self.released_bytes_total = s.bytes_released_total;
        self.nodes_moved_total = s.nodes_moved_total;
    }

    /// Adds another shard's figures.
    pub fn merge(&mut self, o: &ArenaMetrics) {
        self.pages += o.pages;
        self.reclaimable_pages += o.reclaimable_pages;
        self.pages_released_total += o.pages_released_total;
        self.released_bytes_total += o.released_bytes_total;
        self.nodes_moved_total += o.nodes_moved_total;
        self.compact_steps_total += o.compact_steps_total;
        let _ = self.step_us.add(&o.step_us);
    }

    /// Appends the Prometheus text (the step duration as a summary in seconds).
    pub fn render(&self, s: &mut String) {
        for (name, v) in [
            ("ds_arena_pages_released_total", self.pages_released_total),
            ("ds_arena_released_bytes_total", self.released_bytes_total),
            ("ds_arena_nodes_moved_total", self.nodes_moved_total),
            ("ds_arena_compact_steps_total", self.compact_steps_total),
        ] {
            s.push_str(&format!("# TYPE {name} counter\n{name} {v}\n"));
        }
        for (name, v) in [
            ("ds_arena_pages", self.pages),
            ("ds_arena_reclaimable_pages", self.reclaimable_pages),
        ] {
            s.push_str(&format!("# TYPE {name} gauge\n{name} {v}\n"));
        }
        s.push_str("# TYPE ds_arena_compact_step_seconds summary\n");
        for q in [0.5, 0.99, 1.0] {
            s.push_str(&format!(
                "ds_arena_compact_step_seconds{{quantile=\"{q}\"}} {}\n",
                self.step_us.value_at_quantile(q) as f64 * 1e-6
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shards add up, and every figure is rendered under its name.
    #[test]
    fn shards_add_up_and_every_figure_is_rendered() {
        let mut a = ArenaMetrics::default();
        a.set_from(&engines::masstree::ArenaStats {
            pages: 3,
            reclaimable_pages: 1,
            pages_released_total: 5,
            bytes_released_total: 5 << 20,
            nodes_moved_total: 700,
        });
        a.compact_steps_total = 2;
        a.step_us.record(250).unwrap();
        let b = a.clone();
        a.merge(&b);
        let mut s = String::new();
        a.render(&mut s);
        for line in [
            "ds_arena_pages 6\n",
            "ds_arena_reclaimable_pages 2\n",
            "ds_arena_pages_released_total 10\n",
            "ds_arena_released_bytes_total 10485760\n",
            "ds_arena_nodes_moved_total 1400\n",
            "ds_arena_compact_steps_total 4\n",
        ] {
            assert!(s.contains(line), "{line:?} missing from {s}");
        }
        assert!(s.contains("ds_arena_compact_step_seconds{quantile=\"1\"} 0.00025"));
    }
}
