//! How Koiki wants the shop's details (spec §5.1, §5.5): towns without apostrophes, hyphens and
//! cedillas, the recipient's phone without its country prefix, the sender's province by name.

/// The sender's province is neither empty, nor one of the four Catalan province names, nor a
/// Spanish subdivision code (§5.5). The original crashed; the connector records an error shipment
/// for this vendor instead, and books the others.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown province code {0:?}")]
pub struct UnknownProvince(pub String);

/// The original's town-name filter: `'` and `-` become spaces, `ç`/`Ç` become `c`/`C`.
pub(crate) fn clean_city(city: &str) -> String {
    city.chars()
        .map(|c| match c {
            '\'' | '-' => ' ',
            'ç' => 'c',
            'Ç' => 'C',
            other => other,
        })
        .collect()
}

/// The original's `phone[3:]` when the phone matches `^\+\d{2}` (`+34666554433` → `666554433`,
/// `+34 666…` keeps its leading space). Digits are ASCII here, where Python's `\d` also took
/// other Unicode digits.
pub(crate) fn strip_country_prefix(phone: &str) -> String {
    let mut chars = phone.chars();
    let prefixed = chars.next() == Some('+')
        && chars.next().is_some_and(|c| c.is_ascii_digit())
        && chars.next().is_some_and(|c| c.is_ascii_digit());
    if prefixed {
        chars.as_str().to_owned()
    } else {
        phone.to_owned()
    }
}

/// The four Catalan province names the original accepted as input.
const CATALAN_PROVINCE_NAMES: [&str; 4] = ["Barcelona", "Girona", "Tarragona", "Lleida"];

/// Spanish ISO 3166-2 subdivisions (`ES-<code>`), with pycountry 20.7.3's names as the original
/// sent them. The provinces are as listed in spec §5.5; the autonomous communities and cities
/// resolve too, as in the original.
const SPANISH_SUBDIVISIONS: [(&str, &str); 69] = [
    // Provinces.
    ("A", "Alicante"),
    ("AB", "Albacete"),
    ("AL", "Almería"),
    ("AV", "Ávila"),
    ("B", "Barcelona"),
    ("BA", "Badajoz"),
    ("BI", "Bizkaia"),
    ("BU", "Burgos"),
    ("C", "A Coruña"),
    ("CA", "Cádiz"),
    ("CC", "Cáceres"),
    ("CO", "Córdoba"),
    ("CR", "Ciudad Real"),
    ("CS", "Castellón"),
    ("CU", "Cuenca"),
    ("GC", "Las Palmas"),
    ("GI", "Girona"),
    ("GR", "Granada"),
    ("GU", "Guadalajara"),
    ("H", "Huelva"),
    ("HU", "Huesca"),
    ("J", "Jaén"),
    ("L", "Lleida"),
    ("LE", "León"),
    ("LO", "La Rioja"),
    ("LU", "Lugo"),
    ("M", "Madrid"),
    ("MA", "Málaga"),
    ("MU", "Murcia"),
    ("NA", "Navarra / Nafarroa"),
    ("O", "Asturias"),
    ("OR", "Ourense"),
    ("P", "Palencia"),
    ("PM", "Balears"),
    ("PO", "Pontevedra"),
    ("S", "Cantabria"),
    ("SA", "Salamanca"),
    ("SE", "Sevilla"),
    ("SG", "Segovia"),
    ("SO", "Soria"),
    ("SS", "Gipuzkoa"),
    ("T", "Tarragona"),
    ("TE", "Teruel"),
    ("TF", "Santa Cruz de Tenerife"),
    ("TO", "Toledo"),
    ("V", "Valencia / València"),
    ("VA", "Valladolid"),
    ("VI", "Álava"),
    ("Z", "Zaragoza"),
    ("ZA", "Zamora"),
    // Autonomous communities and cities.
    ("AN", "Andalucía"),
    ("AR", "Aragón"),
    ("AS", "Asturias, Principado de"),
    ("CB", "Cantabria"),
    ("CE", "Ceuta"),
    ("CL", "Castilla y León"),
    ("CM", "Castilla-La Mancha"),
    ("CN", "Canarias"),
    ("CT", "Catalunya"),
    ("EX", "Extremadura"),
    ("GA", "Galicia"),
    ("IB", "Illes Balears"),
    ("MC", "Murcia, Región de"),
    ("MD", "Madrid, Comunidad de"),
    ("ML", "Melilla"),
    (
        "NC",
        "Navarra, Comunidad Foral de / Nafarroako Foru Komunitatea",
    ),
    ("PV", "País Vasco / Euskal Herria"),
    ("RI", "La Rioja"),
    ("VC", "Valenciana, Comunidad / Valenciana, Comunitat"),
];

/// The original's `State(code)` as a name (§5.5): empty passes through, the four Catalan names map
/// to themselves (exact case), any other input is looked up as `ES-<input>`, ignoring case.
pub(crate) fn province_name(state: &str) -> Result<String, UnknownProvince> {
    if state.is_empty() {
        return Ok(String::new());
    }
    if let Some(name) = CATALAN_PROVINCE_NAMES.iter().find(|n| **n == state) {
        return Ok((*name).to_owned());
    }
    SPANISH_SUBDIVISIONS
        .iter()
        .find(|(code, _)| code.eq_ignore_ascii_case(state))
        .map(|(_, name)| (*name).to_owned())
        .ok_or_else(|| UnknownProvince(state.to_owned()))
}
