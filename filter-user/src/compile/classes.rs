//! Interning of rule bitmaps into class ids, so equal sets are stored once.

use std::collections::HashMap;

use filter_common::RuleBitmap;

/// Class id -> bitmap, with class 0 reserved for the empty set (a missing map entry
/// in the data plane reads as class 0 and so can never match a rule).
pub struct Classes {
    bitmaps: Vec<RuleBitmap>,
    ids: HashMap<RuleBitmap, u32>,
}

impl Classes {
    pub fn new() -> Self {
        let mut c = Classes { bitmaps: Vec::new(), ids: HashMap::new() };
        c.intern(&RuleBitmap::EMPTY);
        c
    }

    /// The id of `b`, allocating one the first time it is seen.
    pub fn intern(&mut self, b: &RuleBitmap) -> u32 {
        let b = b.with_summary();
        if let Some(&id) = self.ids.get(&b) {
            return id;
        }
        let id = self.bitmaps.len() as u32;
        self.bitmaps.push(b);
        self.ids.insert(b, id);
        id
    }

    pub fn into_bitmaps(self) -> Vec<RuleBitmap> {
        self.bitmaps
    }
}
