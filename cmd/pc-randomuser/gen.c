/* gen.c: builds randomuser.me-shaped users (API version 1.4) straight into a byte buffer.
 * Every user is a pure function of (seed, page, index): a splitmix64 stream seeded from those
 * three numbers feeds every choice, so the same request always yields the same users (ages
 * excepted: like the real API they are computed against today). The type traps of the real API
 * are kept on purpose: postcode is a number for most nationalities and a string for CA, GB and
 * NO (NO with leading zeros), coordinates are strings, timezone offsets are not zero-padded, and
 * id.value is null with an empty id.name for IR, NZ, TR and UA. */
#include "gen.h"

#include "core.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

const char *const ru_fields[RU_NFIELDS] = {"gender", "name",       "location", "email",
                                           "login",  "registered", "dob",      "phone",
                                           "cell",   "id",         "picture",  "nat"};
enum {
    F_GENDER,
    F_NAME,
    F_LOCATION,
    F_EMAIL,
    F_LOGIN,
    F_REGISTERED,
    F_DOB,
    F_PHONE,
    F_CELL,
    F_ID,
    F_PICTURE,
    F_NAT
};

const char *const ru_nats[RU_NNATS] = {"AU", "BR", "CA", "CH", "DE", "DK", "ES",
                                       "FI", "FR", "GB", "IE", "IN", "IR", "MX",
                                       "NL", "NO", "NZ", "RS", "TR", "UA", "US"};

/* Per nationality. Lists are '|'-separated. Formats: '#' digit, 'A' upper-case letter, other
 * bytes literal. postcode kind: 'N' number (format gives its digits), 'S' string. */
typedef struct nat_data {
    const char *country;
    const char *male, *female, *last;
    const char *streets, *cities, *states;
    char postcode_kind;
    const char *postcode_fmt;
    const char *phone_fmt, *cell_fmt;
    const char *id_name; /* NULL: id {"name":"","value":null} */
    const char *id_fmt;
} nat_data;

static const nat_data nat_table[RU_NNATS] = {
    {"Australia", "Jack|Oliver|William|Noah|Lucas|Liam", "Charlotte|Olivia|Ava|Mia|Isla|Grace",
     "Smith|Jones|Williams|Brown|Wilson|Taylor|Walker",
     "George St|Victoria Road|Bay Street|High St", "Sydney|Melbourne|Brisbane|Perth|Hobart|Darwin",
     "New South Wales|Victoria|Queensland|Western Australia|Tasmania", 'N', "####", "0#-####-####",
     "04##-###-###", "TFN", "#########"},
    {"Brazil", "Pedro|Lucas|Gabriel|Rafael|Thiago|Caio", "Ana|Beatriz|Larissa|Júlia|Mariana|Lívia",
     "Silva|Santos|Oliveira|Souza|Lima|Araújo|Costa", "Rua São Paulo|Rua Dois|Avenida Brasil",
     "São Paulo|Rio de Janeiro|Salvador|Fortaleza|Curitiba|Recife",
     "São Paulo|Bahia|Ceará|Paraná|Pernambuco|Minas Gerais", 'N', "#####", "(##) ####-####",
     "(##) #####-####", "CPF", "###.###.###-##"},
    {"Canada", "Liam|Noah|Ethan|Logan|Owen|Felix", "Emma|Chloe|Sophie|Léa|Zoe|Maya",
     "Tremblay|Gagnon|Roy|Côté|Bouchard|Martin|Wong",
     "Dufferin St|King St|Maple Ave|Rue Principale",
     "Toronto|Montreal|Vancouver|Calgary|Ottawa|Halifax",
     "Ontario|Québec|British Columbia|Alberta|Nova Scotia|Manitoba", 'S', "A#A #A#", "A##-###-####",
     "A##-###-####", "SIN", "### ### ###"},
    {"Switzerland", "Luca|Noah|Jonas|Elias|Matteo|Louis", "Mia|Lea|Lina|Elena|Laura|Chiara",
     "Müller|Meier|Schmid|Keller|Weber|Huber|Favre", "Rue de la Gare|Bahnhofstrasse|Via Cantonale",
     "Zürich|Genève|Basel|Bern|Lausanne|Lugano", "Zürich|Genève|Basel-Stadt|Bern|Vaud|Ticino", 'N',
     "####", "0## ### ## ##", "07# ### ## ##", "AVS", "756.####.####.##"},
    {"Germany", "Lukas|Jonas|Leon|Finn|Felix|Paul", "Hannah|Lena|Leonie|Jana|Sophie|Marie",
     "Müller|Schmidt|Schneider|Fischer|Weber|Becker|Wagner",
     "Lindenstraße|Hauptstraße|Bahnhofstraße", "Berlin|Hamburg|München|Köln|Leipzig|Dresden",
     "Berlin|Hamburg|Bayern|Nordrhein-Westfalen|Sachsen|Hessen", 'N', "#####", "0###-#######",
     "01##-#######", "SVNR", "## ###### A ###"},
    {"Denmark", "Oliver|William|Magnus|Emil|Victor|Frederik", "Ida|Emma|Freja|Clara|Alma|Sofie",
     "Jensen|Nielsen|Hansen|Pedersen|Andersen|Christensen|Larsen", "Nørregade|Vestergade|Skolevej",
     "København|Aarhus|Odense|Aalborg|Esbjerg|Randers",
     "Hovedstaden|Midtjylland|Syddanmark|Nordjylland|Sjælland", 'N', "####", "########", "########",
     "CPR", "######-####"},
    {"Spain", "Hugo|Daniel|Pablo|Alejandro|Álvaro|Mario", "Lucía|Sofía|Martina|María|Paula|Julia",
     "García|Fernández|González|Rodríguez|López|Martínez|Sánchez", "Calle Mayor|Avenida de América",
     "Madrid|Barcelona|Valencia|Sevilla|Bilbao|Málaga",
     "Comunidad de Madrid|Cataluña|Andalucía|País Vasco|Galicia", 'N', "#####", "9##-###-###",
     "6##-###-###", "DNI", "########-A"},
    {"Finland", "Onni|Elias|Eino|Leo|Väinö|Aapo", "Aino|Eevi|Helmi|Venla|Ella|Sofia",
     "Korhonen|Virtanen|Mäkinen|Nieminen|Mäkelä|Hämäläinen|Laine", "Hämeenkatu|Mannerheimintie",
     "Helsinki|Espoo|Tampere|Vantaa|Oulu|Turku",
     "Uusimaa|Pirkanmaa|Pohjois-Pohjanmaa|Varsinais-Suomi|Lappi", 'N', "#####", "0#-###-###",
     "04#-###-##-##", "HETU", "######-###A"},
    {"France", "Lucas|Hugo|Louis|Gabriel|Arthur|Théo", "Emma|Jade|Louise|Chloé|Léa|Manon",
     "Martin|Bernard|Dubois|Thomas|Robert|Richard|Petit", "Rue de la République|Place du 8 Février",
     "Paris|Marseille|Lyon|Toulouse|Nice|Nantes",
     "Île-de-France|Provence-Alpes-Côte d'Azur|Rhône|Haute-Garonne|Gironde", 'N', "#####",
     "0#-##-##-##-##", "06-##-##-##-##", "INSEE", "1##########-##"},
    {"United Kingdom", "Oliver|Harry|George|Jack|Charlie|Jacob",
     "Amelia|Olivia|Isla|Emily|Ava|Poppy", "Smith|Jones|Taylor|Brown|Williams|Wilson|Davies",
     "Church Lane|Park Road|Mill Lane|The Green", "London|Leeds|Bristol|Manchester|York|Bath",
     "Kent|Devon|Cumbria|Essex|Durham|Somerset", 'S', "AA# #AA", "0##### ######", "07### ######",
     "NINO", "AA ## ## ## A"},
    {"Ireland", "Jack|James|Noah|Conor|Sean|Cian", "Emily|Grace|Fiadh|Aoife|Sophie|Faith",
     "Murphy|Kelly|Walsh|Byrne|Ryan|O'Brien|Osullivan", "Albert Road|Main Street|Church Road",
     "Bandon|Dublin|Cork|Galway|Limerick|Kilkenny", "Limerick|Cork|Dublin|Galway|Kerry|Mayo", 'N',
     "#####", "0##-###-####", "08#-###-####", "PPS", "#######T"},
    {"India", "Aarav|Vivaan|Aditya|Arjun|Reyansh|Ishaan", "Saanvi|Aanya|Diya|Ananya|Pari|Myra",
     "Sharma|Patel|Singh|Kumar|Gupta|Reddy|Nair", "MG Road|Station Road|Gandhi Road|Nehru Marg",
     "Mumbai|Delhi|Bengaluru|Chennai|Kolkata|Pune",
     "Maharashtra|Delhi|Karnataka|Tamil Nadu|West Bengal|Kerala", 'N', "######", "#########",
     "9#########", "UIDAI", "############"},
    {"Iran", "Amir|Ali|Mohammad|Reza|Hossein|Parsa", "Fatemeh|Zahra|Maryam|Nazanin|Sara|Yasmin",
     "Ahmadi|Hosseini|Karimi|Rahimi|Moradi|Jafari|Rostami", "Valiasr|Enghelab|Azadi|Ferdowsi",
     "Tehran|Mashhad|Isfahan|Shiraz|Tabriz|Qom", "Tehran|Razavi Khorasan|Isfahan|Fars|Qom", 'N',
     "#####", "0##-########", "09##-###-####", NULL, NULL},
    {"Mexico", "Santiago|Mateo|Sebastián|Leonardo|Diego|Emiliano",
     "Sofía|Valentina|Regina|Camila|Ximena",
     "Hernández|García|Martínez|López|González|Pérez|Rodríguez", "Calle Juárez|Avenida Reforma",
     "Ciudad de México|Guadalajara|Monterrey|Puebla|Tijuana|León",
     "Jalisco|Nuevo León|Puebla|Baja California|Guanajuato", 'N', "#####", "(###) ### ####",
     "(6##) ### ####", "NSS", "## ## ## ####"},
    {"Netherlands", "Daan|Sem|Lucas|Finn|Levi|Bram", "Emma|Julia|Tess|Sophie|Zoë|Fenna",
     "de Jong|Jansen|de Vries|van den Berg|Bakker|Visser|Smit", "Kerkstraat|Dorpsstraat|Molenweg",
     "Amsterdam|Rotterdam|Utrecht|Eindhoven|Groningen|Leiden",
     "Noord-Holland|Zuid-Holland|Utrecht|Noord-Brabant|Groningen", 'N', "####", "(0##) #######",
     "(06) ########", "BSN", "########"},
    {"Norway", "Jakob|Emil|Noah|Oliver|Filip|Aksel", "Nora|Emma|Sara|Ingrid|Maja|Sofie",
     "Hansen|Johansen|Olsen|Larsen|Andersen|Pedersen|Ødegård", "Storgata|Kirkeveien|Skogveien",
     "Oslo|Bergen|Trondheim|Stavanger|Tromsø|Bodø", "Oslo|Vestland|Trøndelag|Rogaland|Nordland",
     'S', "####", "########", "4#######", "FN", "###########"},
    {"New Zealand", "Oliver|Jack|Noah|Leo|George|Nikau", "Isla|Charlotte|Amelia|Olivia|Aria|Mia",
     "Smith|Wilson|Williams|Brown|Taylor|Walker|Ngata", "Queen Street|Great North Road|Beach Road",
     "Auckland|Wellington|Christchurch|Dunedin|Napier|Nelson",
     "Auckland|Wellington|Canterbury|Otago|Waikato|Tasman", 'N', "####", "(###)-###-####",
     "(0##)-###-####", NULL, NULL},
    {"Serbia", "Luka|Stefan|Nikola|Marko|Filip|Lazar", "Milica|Jovana|Ana|Teodora|Sara|Mila",
     "Jovanović|Petrović|Nikolić|Marković|Đorđević|Stojanović|Ilić", "Kneza Miloša|Cara Dušana",
     "Beograd|Novi Sad|Niš|Kragujevac|Subotica|Čačak", "Beograd|Vojvodina|Nišava|Šumadija|Zlatibor",
     'N', "#####", "0##-####-###", "06#-####-###", "SID", "#########"},
    {"Turkey", "Yusuf|Eymen|Ömer|Mustafa|Emir|Kerem", "Zeynep|Elif|Defne|Ecrin|Azra|Nehir",
     "Yılmaz|Kaya|Demir|Şahin|Çelik|Yıldız|Öztürk", "Atatürk Cd|İstiklal Cd|Bağdat Cd",
     "İstanbul|Ankara|İzmir|Bursa|Antalya|Konya", "İstanbul|Ankara|İzmir|Bursa|Antalya|Konya", 'N',
     "#####", "(###)-###-####", "(5##)-###-####", NULL, NULL},
    {"Ukraine", "Oleksandr|Andriy|Dmytro|Maksym|Bohdan|Taras", "Anna|Sofiya|Mariya|Oksana|Iryna",
     "Shevchenko|Bondarenko|Kovalenko|Tkachenko|Kravchenko|Melnyk", "Khreshchatyk|Shevchenka",
     "Kyiv|Lviv|Odesa|Kharkiv|Dnipro|Poltava", "Kyivska|Lvivska|Odeska|Kharkivska|Poltavska", 'N',
     "#####", "(0##) Y##-####", "(09#) Y##-####", NULL, NULL},
    {"United States", "James|John|Robert|Michael|William|David",
     "Mary|Patricia|Jennifer|Linda|Ella", "Smith|Johnson|Williams|Brown|Jones|Miller|Davis",
     "Main St|Oak Ridge Ln|Pecan Acres Ln|Elm St", "Austin|Denver|Seattle|Boston|Phoenix|Portland",
     "Texas|Colorado|Washington|Massachusetts|Arizona|Oregon", 'N', "#####", "(###) ###-####",
     "(###) ###-####", "SSN", "###-##-####"},
};

static const struct {
    const char *offset, *description;
} tz_table[] = {
    {"-12:00", "Eniwetok, Kwajalein"},
    {"-11:00", "Midway Island, Samoa"},
    {"-10:00", "Hawaii"},
    {"-9:00", "Alaska"},
    {"-8:00", "Pacific Time (US & Canada)"},
    {"-7:00", "Mountain Time (US & Canada)"},
    {"-6:00", "Central Time (US & Canada), Mexico City"},
    {"-5:00", "Eastern Time (US & Canada), Bogota, Lima"},
    {"-4:00", "Atlantic Time (Canada), Caracas, La Paz"},
    {"-3:30", "Newfoundland"},
    {"-3:00", "Brazil, Buenos Aires, Georgetown"},
    {"-2:00", "Mid-Atlantic"},
    {"-1:00", "Azores, Cape Verde Islands"},
    {"0:00", "Western Europe Time, London, Lisbon, Casablanca"},
    {"+1:00", "Brussels, Copenhagen, Madrid, Paris"},
    {"+2:00", "Kaliningrad, South Africa"},
    {"+3:00", "Baghdad, Riyadh, Moscow, St. Petersburg"},
    {"+3:30", "Tehran"},
    {"+4:00", "Abu Dhabi, Muscat, Baku, Tbilisi"},
    {"+4:30", "Kabul"},
    {"+5:00", "Ekaterinburg, Islamabad, Karachi, Tashkent"},
    {"+5:30", "Bombay, Calcutta, Madras, New Delhi"},
    {"+5:45", "Kathmandu"},
    {"+6:00", "Almaty, Dhaka, Colombo"},
    {"+7:00", "Bangkok, Hanoi, Jakarta"},
    {"+8:00", "Beijing, Perth, Singapore, Hong Kong"},
    {"+9:00", "Tokyo, Seoul, Osaka, Sapporo, Yakutsk"},
    {"+9:30", "Adelaide, Darwin"},
    {"+10:00", "Eastern Australia, Guam, Vladivostok"},
    {"+11:00", "Magadan, Solomon Islands, New Caledonia"},
    {"+12:00", "Auckland, Wellington, Fiji, Kamchatka"},
};

static const char k_adjectives[] =
    "heavy|lazy|happy|silver|golden|tiny|big|red|blue|purple|"
    "black|white|organic|crazy|brown|yellow|orange|angry|sad|ticklish";
static const char k_animals[] = "wolf|bear|tiger|lion|rabbit|duck|goose|cat|dog|fish|bird|frog|"
                                "peacock|swan|koala|panda|zebra|leopard|butterfly|elephant";
/* ---------------------------------------------------------------- PRNG */

typedef struct rng {
    uint64_t s;
} rng;

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static uint64_t rnd(rng *r)
{
    return splitmix(&r->s);
}
static uint32_t rnd_below(rng *r, uint32_t n)
{
    return n ? (uint32_t)(rnd(r) % n) : 0;
}

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h;
}

/* ---------------------------------------------------------------- JSON output helpers */

int ru_json_str(pc_buf *b, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    char tmp[256];
    size_t n = 0;
    tmp[n++] = '"';
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (n > sizeof tmp - 8) {
            if (pc_buf_append(b, tmp, n) < 0)
                return PC_ENOMEM;
            n = 0;
        }
        if (c == '"' || c == '\\') {
            tmp[n++] = '\\';
            tmp[n++] = (char)c;
        } else if (c < 0x20) {
            tmp[n++] = '\\';
            tmp[n++] = 'u';
            tmp[n++] = '0';
            tmp[n++] = '0';
            tmp[n++] = hex[c >> 4];
            tmp[n++] = hex[c & 15];
        } else {
            tmp[n++] = (char)c;
        }
    }
    tmp[n++] = '"';
    return pc_buf_append(b, tmp, n);
}

/* token number i of a '|' list into out */
static void list_pick(const char *list, rng *r, char *out, size_t outsz)
{
    size_t count = 1;
    for (const char *p = list; *p; p++)
        count += *p == '|';
    uint32_t want = rnd_below(r, (uint32_t)count);
    const char *p = list;
    for (uint32_t i = 0; i < want; i++)
        p = strchr(p, '|') + 1;
    size_t len = strcspn(p, "|");
    if (len >= outsz)
        len = outsz - 1;
    memcpy(out, p, len);
    out[len] = '\0';
}

/* '#' digit, 'A' upper-case letter, 'Y' digit 1-9, anything else literal */
static void fmt_fill(const char *fmt, rng *r, char *out, size_t outsz)
{
    size_t n = 0;
    for (; *fmt && n + 1 < outsz; fmt++) {
        switch (*fmt) {
        case '#':
            out[n++] = (char)('0' + rnd_below(r, 10));
            break;
        case 'Y':
            out[n++] = (char)('1' + rnd_below(r, 9));
            break;
        case 'A':
            out[n++] = (char)('A' + rnd_below(r, 26));
            break;
        default:
            out[n++] = *fmt;
            break;
        }
    }
    out[n] = '\0';
}

static void digest_hex(const char *alg, const char *data, char *out)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    const EVP_MD *m = strcmp(alg, "md5") == 0    ? EVP_md5()
                      : strcmp(alg, "sha1") == 0 ? EVP_sha1()
                                                 : EVP_sha256();
    if (EVP_Digest(data, strlen(data), md, &len, m, NULL) != 1)
        len = 0;
    pc_hex_encode(md, len, out);
}

/* ISO date with milliseconds and Z, and the whole years between it and now */
static void iso_date(int64_t ms, time_t now, char *out, size_t outsz, int *age)
{
    int64_t sec = ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000); /* floor */
    time_t t = (time_t)sec;
    struct tm tm, tn;
    gmtime_r(&t, &tm);
    gmtime_r(&now, &tn);
    snprintf(out, outsz, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", (tm.tm_year + 1900) % 10000,
             (tm.tm_mon + 1) % 100, tm.tm_mday % 100, tm.tm_hour % 100, tm.tm_min % 100,
             tm.tm_sec % 100, (int)(ms - sec * 1000));
    int a = tn.tm_year - tm.tm_year;
    if (tn.tm_mon < tm.tm_mon || (tn.tm_mon == tm.tm_mon && tn.tm_mday < tm.tm_mday))
        a--;
    *age = a < 0 ? 0 : a;
}

static void lower_ascii(char *dst, const char *src, size_t dstsz)
{
    size_t n = 0;
    for (; *src && n + 1 < dstsz; src++) {
        unsigned char c = (unsigned char)*src;
        if (c == ' ' || c == '\'')
            continue;
        dst[n++] = (char)tolower(c);
    }
    dst[n] = '\0';
}

int ru_field_index(const char *name, size_t len)
{
    for (int i = 0; i < RU_NFIELDS; i++)
        if (strlen(ru_fields[i]) == len && strncasecmp(ru_fields[i], name, len) == 0)
            return i;
    return -1;
}

int ru_nat_index(const char *code, size_t len)
{
    for (int i = 0; i < RU_NNATS; i++)
        if (len == 2 && strncasecmp(ru_nats[i], code, 2) == 0)
            return i;
    return -1;
}

#define SEP()                                                                                      \
    do {                                                                                           \
        if (!first)                                                                                \
            rc |= pc_buf_append(b, ",", 1);                                                        \
        first = false;                                                                             \
    } while (0)

/* The API's four character sets by name: every printable ASCII character is in exactly one
 * (special: those neither letter nor digit, the space included), each set in ASCII order. */
static const char *const pw_set_names[4] = {"special", "upper", "lower", "number"};

static int pw_set_of(int c)
{
    return isupper(c) ? 1 : islower(c) ? 2 : isdigit(c) ? 3 : (c >= 0x20 && c < 0x7f) ? 0 : -1;
}

void ru_parse_password(const char *param, ru_req *r)
{
    bool used[4] = {false};
    const char *last = NULL;
    r->pw_charset[0] = '\0';
    r->pw_min = 8;
    r->pw_max = 64;
    for (const char *p = param; p != NULL && *p; p += strcspn(p, ","), p += *p == ',') {
        size_t n = strcspn(p, ",");
        last = p;
        for (int k = 0; k < 4; k++) {
            if (used[k] || strlen(pw_set_names[k]) != n || strncmp(p, pw_set_names[k], n) != 0)
                continue;
            used[k] = true;
            size_t len = strlen(r->pw_charset);
            for (int c = 0x20; c < 0x7f && len + 1 < sizeof r->pw_charset; c++)
                if (pw_set_of(c) == k)
                    r->pw_charset[len++] = (char)c;
            r->pw_charset[len] = '\0';
        }
    }
    if (r->pw_charset[0] == '\0' || last == NULL)
        return;
    /* the length: the last item, "N" or "A-B" (non-numbers count as out of range) */
    char item[32];
    snprintf(item, sizeof item, "%.*s", (int)strcspn(last, ","), last);
    char *dash = strchr(item, '-'), *end;
    long a, b;
    if (dash != NULL) {
        *dash = '\0';
        a = strtol(item, &end, 10);
        a = (end == item || *end) ? -1 : a;
        b = strtol(dash + 1, &end, 10);
        b = (end == dash + 1 || *end) ? -1 : b;
        if (a < 0 || b < 0) { /* the API's min/max of a non-number: both out of range */
            a = -1;
            b = -1;
        } else if (a > b) {
            long t = a;
            a = b;
            b = t;
        }
    } else {
        a = strtol(item, &end, 10);
        a = (end == item || *end) ? -1 : a;
        b = a;
    }
    r->pw_min = a < 1 || a > 64 ? 8 : (int)a;
    r->pw_max = b < 1 || b > 64 || b < r->pw_min ? 64 : (int)b;
}

/* login.password. Without a charset (no password parameter, or one naming none of the four
 * sets) the real API picks a word from its list of common passwords; this server makes a word
 * of the same shape from its username words: an adjective or an animal, half the time with a
 * few digits ("silver", "tiger42"). With one, password=CHARSETS,LENGTH as the API documents:
 * each character drawn from the sets named, the length uniform in [pw_min, pw_max]. */
static void gen_password(const ru_req *r, rng *g, const char *adj, const char *animal, char *out,
                         size_t outsz)
{
    if (r->pw_charset[0] == '\0') {
        int n = snprintf(out, outsz, "%s", rnd_below(g, 2) ? adj : animal);
        if (n > 0 && (size_t)n < outsz && rnd_below(g, 2))
            snprintf(out + n, outsz - (size_t)n, "%u", rnd_below(g, 1000));
        return;
    }
    size_t nset = strlen(r->pw_charset);
    uint32_t len = (uint32_t)r->pw_min + rnd_below(g, (uint32_t)(r->pw_max - r->pw_min + 1));
    size_t i = 0;
    for (; i < len && i + 1 < outsz; i++)
        out[i] = r->pw_charset[rnd_below(g, (uint32_t)nset)];
    out[i] = '\0';
}

int ru_gen_user(pc_buf *b, const ru_req *r, long idx, ru_malform malform)
{
    rng g = {fnv1a(r->seed) ^ ((uint64_t)r->page * 0xD6E8FEB86659FD93ull)};
    g.s ^= (uint64_t)idx * 0xA0761D6478BD642Full;
    (void)rnd(&g);

    /* every choice is drawn in a fixed order, whatever the field mask, so inc/exc do not change
     * the values of the fields that remain */
    int nat;
    if (r->nat_mask) {
        int allowed[RU_NNATS], n = 0;
        for (int i = 0; i < RU_NNATS; i++)
            if (r->nat_mask & (1u << i))
                allowed[n++] = i;
        nat = allowed[rnd_below(&g, (uint32_t)n)];
    } else {
        nat = (int)rnd_below(&g, RU_NNATS);
    }
    const nat_data *nd = &nat_table[nat];
    bool male = rnd_below(&g, 2) == 0;
    if (r->gender)
        male = r->gender == 1;

    char first_name[64], last_name[64], title[16], street[96], city[96], state[96];
    char postcode[32], lat[24], lon[24], uuid[40], username[64], password[72], salt[16];
    char md5[33], sha1[41], sha256[65], salted[96], dob[40], reg[40], phone[32], cell[32];
    char idval[40], email[160], lf[64], ll[64];
    list_pick(male ? nd->male : nd->female, &g, first_name, sizeof first_name);
    list_pick(nd->last, &g, last_name, sizeof last_name);
    list_pick(male ? "Mr" : "Ms|Mrs|Miss|Madame", &g, title, sizeof title);
    long street_no = 1 + (long)rnd_below(&g, 9999);
    list_pick(nd->streets, &g, street, sizeof street);
    list_pick(nd->cities, &g, city, sizeof city);
    list_pick(nd->states, &g, state, sizeof state);
    fmt_fill(nd->postcode_fmt, &g, postcode, sizeof postcode);
    snprintf(lat, sizeof lat, "%.4f", ((double)rnd_below(&g, 1800001) - 900000.0) / 10000.0);
    snprintf(lon, sizeof lon, "%.4f", ((double)rnd_below(&g, 3600001) - 1800000.0) / 10000.0);
    size_t tz = rnd_below(&g, (uint32_t)(sizeof tz_table / sizeof tz_table[0]));
    uint64_t u1 = rnd(&g), u2 = rnd(&g);
    snprintf(uuid, sizeof uuid, "%08x-%04x-4%03x-%x%03x-%012llx", (unsigned)(u1 >> 32),
             (unsigned)((u1 >> 16) & 0xffff), (unsigned)(u1 & 0xfff),
             (unsigned)(8 + ((u2 >> 62) & 3)), (unsigned)((u2 >> 48) & 0xfff),
             (unsigned long long)(u2 & 0xffffffffffffull));
    char adj[24], animal[24];
    list_pick(k_adjectives, &g, adj, sizeof adj);
    list_pick(k_animals, &g, animal, sizeof animal);
    snprintf(username, sizeof username, "%s%s%u", adj, animal, 10 + rnd_below(&g, 990));
    gen_password(r, &g, adj, animal, password, sizeof password);
    for (int i = 0; i < 8; i++) { /* a-z, A-Z, 0-9 */
        uint32_t v = rnd_below(&g, 62);
        salt[i] = (char)(v < 26 ? 'a' + v : v < 52 ? 'A' + (v - 26) : '0' + (v - 52));
    }
    salt[8] = '\0';
    snprintf(salted, sizeof salted, "%s%s", password, salt);
    digest_hex("md5", salted, md5);
    digest_hex("sha1", salted, sha1);
    digest_hex("sha256", salted, sha256);
    int dob_age, reg_age;
    /* dob 1945..2004, registered 2002..2022 (unix ms) */
    int64_t dob_ms = -788918400000LL + (int64_t)(rnd(&g) % 1893456000000ull);
    int64_t reg_ms = 1009843200000LL + (int64_t)(rnd(&g) % 662688000000ull);
    iso_date(dob_ms, r->now, dob, sizeof dob, &dob_age);
    iso_date(reg_ms, r->now, reg, sizeof reg, &reg_age);
    fmt_fill(nd->phone_fmt, &g, phone, sizeof phone);
    fmt_fill(nd->cell_fmt, &g, cell, sizeof cell);
    if (nd->id_name)
        fmt_fill(nd->id_fmt, &g, idval, sizeof idval);
    unsigned pic = rnd_below(&g, 100);
    lower_ascii(lf, first_name, sizeof lf);
    lower_ascii(ll, last_name, sizeof ll);
    snprintf(email, sizeof email, "%s.%s@example.com", lf, ll);

    int rc = 0;
    bool first = true;
    unsigned f = r->fields;
    rc |= pc_buf_append(b, "{", 1);
    if (f & (1u << F_GENDER)) {
        SEP();
        rc |= pc_buf_puts(b, male ? "\"gender\":\"male\"" : "\"gender\":\"female\"");
    }
    if (f & (1u << F_NAME)) {
        SEP();
        rc |= pc_buf_puts(b, "\"name\":{\"title\":");
        rc |= ru_json_str(b, title);
        rc |= pc_buf_puts(b, ",\"first\":");
        rc |= ru_json_str(b, first_name);
        rc |= pc_buf_puts(b, ",\"last\":");
        rc |= ru_json_str(b, last_name);
        rc |= pc_buf_puts(b, "}");
    }
    if (f & (1u << F_LOCATION)) {
        SEP();
        rc |= pc_buf_printf(b, "\"location\":{\"street\":{\"number\":%ld,\"name\":", street_no);
        rc |= ru_json_str(b, street);
        rc |= pc_buf_puts(b, "},\"city\":");
        rc |= ru_json_str(b, city);
        rc |= pc_buf_puts(b, ",\"state\":");
        rc |= ru_json_str(b, state);
        rc |= pc_buf_puts(b, ",\"country\":");
        rc |= ru_json_str(b, nd->country);
        rc |= pc_buf_puts(b, ",\"postcode\":");
        if (nd->postcode_kind == 'S') {
            rc |= ru_json_str(b, postcode);
        } else {
            const char *p = postcode;
            while (*p == '0' && p[1]) /* a number has no leading zeros */
                p++;
            rc |= pc_buf_puts(b, p);
        }
        rc |= pc_buf_printf(b,
                            ",\"coordinates\":{\"latitude\":\"%s\",\"longitude\":\"%s\"},"
                            "\"timezone\":{\"offset\":\"%s\",\"description\":",
                            lat, lon, tz_table[tz].offset);
        rc |= ru_json_str(b, tz_table[tz].description);
        rc |= pc_buf_puts(b, "}}");
    }
    if (f & (1u << F_EMAIL)) {
        SEP();
        if (malform == RU_EMAIL_NOT_STRING) {
            rc |= pc_buf_puts(b, "\"email\":12345");
        } else {
            rc |= pc_buf_puts(b, "\"email\":");
            rc |= ru_json_str(b, email);
        }
    }
    if (f & (1u << F_LOGIN)) {
        SEP();
        rc |= pc_buf_puts(b, "\"login\":{");
        if (malform != RU_NO_UUID)
            rc |= pc_buf_printf(b, "\"uuid\":\"%s\",", uuid);
        rc |= pc_buf_printf(b, "\"username\":\"%s\",\"password\":", username);
        rc |= ru_json_str(b, password); /* password=special,... has '"' and '\\' */
        rc |= pc_buf_printf(b,
                            ",\"salt\":\"%s\",\"md5\":\"%s\",\"sha1\":\"%s\",\"sha256\":\"%s\"}",
                            salt, md5, sha1, sha256);
    }
    if (f & (1u << F_DOB)) {
        SEP();
        rc |= pc_buf_printf(b, "\"dob\":{\"date\":\"%s\",\"age\":%d}", dob, dob_age);
    }
    if (f & (1u << F_REGISTERED)) {
        SEP();
        rc |= pc_buf_printf(b, "\"registered\":{\"date\":\"%s\",\"age\":%d}", reg, reg_age);
    }
    if (f & (1u << F_PHONE)) {
        SEP();
        rc |= pc_buf_printf(b, "\"phone\":\"%s\"", phone);
    }
    if (f & (1u << F_CELL)) {
        SEP();
        rc |= pc_buf_printf(b, "\"cell\":\"%s\"", cell);
    }
    if (f & (1u << F_ID)) {
        SEP();
        if (nd->id_name)
            rc |= pc_buf_printf(b, "\"id\":{\"name\":\"%s\",\"value\":\"%s\"}", nd->id_name, idval);
        else
            rc |= pc_buf_puts(b, "\"id\":{\"name\":\"\",\"value\":null}");
    }
    if (f & (1u << F_PICTURE)) {
        SEP();
        const char *who = male ? "men" : "women";
        rc |= pc_buf_printf(
            b,
            "\"picture\":{\"large\":\"https://randomuser.me/api/portraits/%s/%u.jpg\","
            "\"medium\":\"https://randomuser.me/api/portraits/med/%s/%u.jpg\","
            "\"thumbnail\":\"https://randomuser.me/api/portraits/thumb/%s/%u.jpg\"}",
            who, pic, who, pic, who, pic);
    }
    if (f & (1u << F_NAT)) {
        SEP();
        rc |= pc_buf_printf(b, "\"nat\":\"%s\"", ru_nats[nat]);
    }
    rc |= pc_buf_append(b, "}", 1);
    return rc ? PC_ENOMEM : 0;
}
