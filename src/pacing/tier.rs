//! What rate a business number may send at, from what Kapso's phone-number object says.
//!
//! Meta: 80 messages/s per registered number by default, up to 1,000 by automatic upgrade,
//! 20 for numbers shared with the WhatsApp Business app (coexistence); the Graph phone-number
//! object reports it as `throughput.level` (`STANDARD`, `HIGH`, `NOT_APPLICABLE`)
//! (<https://developers.facebook.com/documentation/business-messaging/whatsapp/throughput>).
//! Kapso's `WhatsappPhoneNumber` has a nullable string `throughput_tier` ("Message rate limit
//! tier") whose only documented example is `TIER_10K`, which reads like Meta's *messaging limit*
//! tier (unique users per 24 h), not a rate (tests/fixtures/kapso-openapi/platform-webhooks.yaml).
//! So only values that name a throughput level are trusted; anything else means "unknown" and
//! the configured default applies.

/// Meta's default throughput of a business number, messages per second.
pub const STANDARD_RATE: f64 = 80.0;
/// Meta's upgraded throughput ("higher throughput"), messages per second.
pub const HIGH_RATE: f64 = 1_000.0;
/// Fixed throughput of a coexistence number (Business app + Cloud API), messages per second.
pub const COEXISTENCE_RATE: f64 = 20.0;

/// The send rate a `throughput_tier` value stands for, when it names a throughput level.
pub fn rate_of_tier(tier: &str) -> Option<f64> {
    match tier.trim().to_ascii_uppercase().as_str() {
        "STANDARD" => Some(STANDARD_RATE),
        "HIGH" | "HIGH_THROUGHPUT" => Some(HIGH_RATE),
        "COEXISTENCE" => Some(COEXISTENCE_RATE),
        // `NOT_APPLICABLE`, messaging-limit tiers (`TIER_250` ... `TIER_UNLIMITED`), unknown.
        _ => None,
    }
}

/// The rate of a number from Kapso's phone-number object: coexistence numbers are fixed at
/// 20/s whatever the tier says.
pub fn rate_of_number(throughput_tier: Option<&str>, is_coexistence: Option<bool>) -> Option<f64> {
    if is_coexistence == Some(true) {
        return Some(COEXISTENCE_RATE);
    }
    throughput_tier.and_then(rate_of_tier)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throughput_levels_map_to_meta_rates() {
        assert_eq!(rate_of_tier("STANDARD"), Some(80.0));
        assert_eq!(rate_of_tier("high"), Some(1_000.0));
        assert_eq!(rate_of_number(Some("HIGH"), Some(true)), Some(20.0));
    }

    #[test]
    fn messaging_limit_tiers_and_unknown_values_are_not_rates() {
        for tier in ["TIER_10K", "TIER_UNLIMITED", "NOT_APPLICABLE", "", "fast"] {
            assert_eq!(rate_of_tier(tier), None, "{tier}");
        }
        assert_eq!(rate_of_number(None, None), None);
    }
}
