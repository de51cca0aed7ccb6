//! The webhook signature (`domain::service::signature`): any secret, body and
//! `X-WC-Webhook-Signature` value.
//!
//! The input is `[at, to]`, the secret, a `0xFF` byte, the header value, a `0xFF` byte, then the
//! body (`0xFF` never occurs in UTF-8; invalid UTF-8 in the two strings is replaced).
//!
//! Never panics; what `sign` makes verifies (also with the whitespace a header may carry) and is
//! WooCommerce's base64 HMAC-SHA256 of the body keyed with the decoded secret; the only value that
//! verifies is that one; changing its character `at` to `to` makes it not verify; the named and
//! numeric forms of `&amp;` in a secret are the same secret.

#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use domain::service::signature::WebhookSecret;
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;

fuzz_target!(|data: &[u8]| {
    let [at, to, rest @ ..] = data else {
        return;
    };
    let mut parts = rest.splitn(3, |&b| b == 0xFF);
    let (Some(secret), Some(signature), Some(body)) = (parts.next(), parts.next(), parts.next())
    else {
        return;
    };
    check(
        &String::from_utf8_lossy(secret),
        &String::from_utf8_lossy(signature),
        body,
        (*at, char::from(*to)),
    );
});

fn check(configured: &str, signature: &str, body: &[u8], (at, to): (u8, char)) {
    let secret = WebhookSecret::new(configured);

    // An arbitrary header verifies only when it is the right signature, whitespace aside.
    let right = secret.sign(body);
    if secret.verify(body, signature) {
        assert_eq!(
            signature.trim(),
            right,
            "a non-canonical signature verified"
        );
    }

    assert_eq!(right.len(), 44, "base64 of 32 bytes");
    assert!(
        secret.verify(body, &right),
        "sign's own signature does not verify"
    );
    assert!(
        secret.verify(body, &format!(" {right}\r\n")),
        "the header's surrounding whitespace is not ignored"
    );
    let longer = [body, b"\0"].concat();
    assert!(
        !secret.verify(&longer, &right),
        "the signature is not bound to its body"
    );

    // Any change of a character of the right signature is refused.
    let at = usize::from(at) % right.len();
    let mut tampered = right.clone();
    tampered.replace_range(at..=at, to.encode_utf8(&mut [0; 4]));
    if tampered != right {
        assert!(
            !secret.verify(body, &tampered),
            "a changed signature verified: {tampered:?}"
        );
    }

    // WordPress's decoding: `&amp;` and `&#x26;` are the same `&`.
    let renamed = WebhookSecret::new(&configured.replace("&amp;", "&#x26;"));
    assert_eq!(
        renamed.sign(body),
        right,
        "&amp; and &#x26; decode differently"
    );

    // A secret whose `&`s are all escaped decodes to itself: the key is exactly its bytes.
    let escaped = WebhookSecret::new(&configured.replace('&', "&amp;"));
    let mut mac = Hmac::<Sha256>::new_from_slice(configured.as_bytes()).expect("any key length");
    mac.update(body);
    assert_eq!(
        escaped.sign(body),
        STANDARD.encode(mac.finalize().into_bytes()),
        "not WooCommerce's base64 HMAC-SHA256"
    );
}
