//! The tier a route is served at: the `tier` label of the route series,
//! shared by the route tracker, the metrics and the API. (Single gateway
//! requests can also be answered from a cache: their `tier` label is
//! `metrics::gateway::Tier`, which has `cache` besides these.)

use crate::label::label_enum;

label_enum! {
    /// How far down its chain a route is served.
    pub enum Tier {
        /// The first endpoint of the chain.
        Primary = "primary",
        /// Any later endpoint.
        Fallback = "fallback",
        /// No endpoint admits traffic.
        Exhausted = "exhausted",
    }
}

impl Tier {
    /// The tier of a serving level (`None` when exhausted).
    pub fn of_level(level: Option<usize>) -> Tier {
        match level {
            Some(0) => Tier::Primary,
            Some(_) => Tier::Fallback,
            None => Tier::Exhausted,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_zero_is_primary_any_other_fallback() {
        assert_eq!(Tier::of_level(Some(0)), Tier::Primary);
        assert_eq!(Tier::of_level(Some(1)), Tier::Fallback);
        assert_eq!(Tier::of_level(Some(7)), Tier::Fallback);
        assert_eq!(Tier::of_level(None), Tier::Exhausted);
    }
}
