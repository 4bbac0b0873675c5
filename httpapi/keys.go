package httpapi

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"time"
)

// Scopes a key can carry (DESIGN §3). Part of the API.
const (
	// ScopePortal: availability, and bookings on behalf of applicants.
	ScopePortal = "portal"
	// ScopeOperator: check-in, complete, no-show, approve/reject late
	// cancels, forced cancels, the day's agenda, lookups by number and
	// (without ScopePortal) walk-in bookings — at the key's offices only.
	ScopeOperator = "operator"
	// ScopeAdmin: office configs, releases, closures — at the key's
	// offices only.
	ScopeAdmin = "admin"
)

// officesAll in a key's office list allows every office.
const officesAll = "*"

// Limits of a keys file.
const (
	keysMax         = 1024
	keySecretsMax   = 4  // per key: a rotation needs two; a rotation begun before the last one ended, a third
	keyBytesMin     = 16 // a guessable key is no key
	keyBytesMax     = 256
	keyNameBytesMax = 64 // the name is the Actor in history and logs
	keyOfficesMax   = 4096
	keyRateMax      = 1e9     // requests per second, as Config.RatePerSecond
	keyBurstMax     = 1 << 30 // requests, as Config.RateBurst
)

// keyNamePattern: names appear in logs, metrics and booking history.
var keyNamePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// Key is one API key of the keys file (DESIGN §4). Immutable after
// LoadKeys; safe for concurrent reads.
type Key struct {
	// Key is the secret bearer token, when the key has one; Keys lists
	// them when it has several. Exactly one of the two is given.
	Key string `json:"key,omitempty"`
	// Keys are the key's secrets during a rotation: the old one and the
	// new one, 1 to keySecretsMax of them. Whichever a request presents,
	// it is the same key: its name, namespace, Idempotency-Keys and rate
	// bucket do not depend on the secret.
	Keys []string `json:"keys,omitempty"`
	// Name identifies the key's owner: the Actor of the changes it makes,
	// the namespace of its Idempotency-Keys, the key of its rate limit.
	Name string `json:"name"`
	// Namespace is the portal the key belongs to: the applicants a
	// portal key acts for, reads and sees events of are the ones of its
	// namespace (namespace.go). Absent: the key's name. "" is the legacy
	// namespace: the bookings stored before namespaces existed. A reload
	// does not change the namespace of a key it keeps (Server.ReloadKeys).
	Namespace *string  `json:"namespace,omitempty"`
	Scopes    []string `json:"scopes"`
	// Offices limits the operator and admin scopes to these office ids,
	// and every key's event feed; "*" allows all. The portal scope's
	// holds and booking actions are not limited by office.
	Offices []string `json:"offices"`
	// RatePerSecond is the key's sustained request rate, in requests per
	// second, in place of Config.RatePerSecond. Zero: Config.RatePerSecond.
	RatePerSecond float64 `json:"rate_per_second,omitempty"`
	// RateBurst is the key's bucket size, in requests. Zero: twice
	// RatePerSecond (at least 1) when the key has its own rate, else
	// Config.RateBurst.
	RateBurst int `json:"rate_burst,omitempty"`
}

// secrets returns the key's secrets, however the file gave them.
func (k *Key) secrets() []string {
	if k.Key != "" {
		return []string{k.Key}
	}
	return k.Keys
}

// keysFileShape is what LoadKeys asks for when the file is not an array.
const keysFileShape = `a JSON array of keys {"name", "key" or "keys", "namespace", "scopes", "offices", "rate_per_second", "rate_burst"}`

// LoadKeys decodes and validates a keys file: a JSON array of keys with
// unique names and secrets, known scopes, and at least one office entry.
// Its errors describe the file (an entry's index and name, a line and
// column); the caller names the file.
func LoadKeys(data []byte) ([]Key, error) {
	var raws []json.RawMessage
	if err := json.Unmarshal(data, &raws); err != nil {
		return nil, errors.New(FileJSONProblem(data, err, keysFileShape))
	}
	if len(raws) > keysMax {
		return nil, fmt.Errorf("keys: %d keys, at most %d", len(raws), keysMax)
	}
	keys := make([]Key, len(raws))
	for i, raw := range raws {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&keys[i]); err != nil {
			return nil, fmt.Errorf("keys[%d]: %s", i, jsonProblem(err, "the entry"))
		}
	}
	if err := validateKeys(keys); err != nil {
		return nil, err
	}
	return keys, nil
}

func validateKeys(keys []Key) error {
	if len(keys) == 0 {
		return fmt.Errorf("keys: at least one key is required")
	}
	if len(keys) > keysMax {
		return fmt.Errorf("keys: %d keys, at most %d", len(keys), keysMax)
	}
	names := map[string]bool{}
	secrets := map[[32]byte]bool{}
	for i, k := range keys {
		if !keyNamePattern.MatchString(k.Name) {
			return fmt.Errorf("keys[%d]: name %q: use 1-64 letters, digits, '.', '_' or '-'", i, k.Name)
		}
		if err := validateSecrets(&k, secrets); err != nil {
			return fmt.Errorf("keys[%d] (%s): %w", i, k.Name, err)
		}
		if k.Namespace != nil && *k.Namespace != "" && !keyNamePattern.MatchString(*k.Namespace) {
			return fmt.Errorf("keys[%d] (%s): namespace %q: use 1-64 letters, digits, '.', '_' or '-', or \"\" for the bookings stored before namespaces", i, k.Name, *k.Namespace)
		}
		if names[k.Name] {
			return fmt.Errorf("keys[%d]: name %q is used twice", i, k.Name)
		}
		names[k.Name] = true
		if len(k.Scopes) == 0 {
			return fmt.Errorf("keys[%d] (%s): at least one scope is required (portal, operator, admin)", i, k.Name)
		}
		for _, s := range k.Scopes {
			if s != ScopePortal && s != ScopeOperator && s != ScopeAdmin {
				return fmt.Errorf("keys[%d] (%s): unknown scope %q (use portal, operator, admin)", i, k.Name, s)
			}
		}
		if len(k.Offices) == 0 {
			return fmt.Errorf("keys[%d] (%s): offices is required: office ids, or [\"*\"] for all", i, k.Name)
		}
		if len(k.Offices) > keyOfficesMax {
			return fmt.Errorf("keys[%d] (%s): at most %d offices", i, k.Name, keyOfficesMax)
		}
		for _, o := range k.Offices {
			if o == "" {
				return fmt.Errorf("keys[%d] (%s): empty office id", i, k.Name)
			}
		}
		// Not !(x > 0) tests: JSON has no NaN, but Config.Keys comes from Go.
		if !(k.RatePerSecond >= 0 && k.RatePerSecond <= keyRateMax) {
			return fmt.Errorf("keys[%d] (%s): rate_per_second %g must be in (0, %g] requests per second, or absent for -rate-per-key", i, k.Name, k.RatePerSecond, float64(keyRateMax))
		}
		if k.RateBurst < 0 || k.RateBurst > keyBurstMax {
			return fmt.Errorf("keys[%d] (%s): rate_burst %d must be in 1..%d requests, or absent for the default", i, k.Name, k.RateBurst, keyBurstMax)
		}
	}
	return nil
}

// validateSecrets checks a key's secrets and adds their digests to seen,
// refusing one seen before: a secret is one key's only.
func validateSecrets(k *Key, seen map[[32]byte]bool) error {
	if k.Key != "" && len(k.Keys) > 0 {
		return fmt.Errorf(`give the secret as "key", or several as "keys" during a rotation, not both`)
	}
	secrets := k.secrets()
	if len(secrets) == 0 {
		return fmt.Errorf(`a secret is required: "key": "…", or "keys": ["…", "…"] during a rotation`)
	}
	if len(secrets) > keySecretsMax {
		return fmt.Errorf("at most %d secrets, %d given", keySecretsMax, len(secrets))
	}
	for j, s := range secrets {
		which := "key"
		if len(k.Keys) > 0 {
			which = fmt.Sprintf("secret %d", j+1)
		}
		if len(s) < keyBytesMin || len(s) > keyBytesMax {
			return fmt.Errorf("%s must be %d..%d bytes", which, keyBytesMin, keyBytesMax)
		}
		for _, c := range []byte(s) {
			if c <= ' ' || c > '~' {
				return fmt.Errorf("%s must be printable ASCII without spaces", which)
			}
		}
		h := sha256.Sum256([]byte(s))
		if seen[h] {
			return fmt.Errorf("%s: the same secret is listed twice", which)
		}
		seen[h] = true
	}
	return nil
}

// principal is a key as the server uses it: one per key name, whichever
// of its secrets a request presents. Immutable; safe for concurrent
// reads. A reload makes new principals; a request keeps the one it was
// authenticated as until it ends.
type principal struct {
	name string
	// namespace is the key's namespace (Key.Namespace, resolved).
	namespace  string
	portal     bool
	operator   bool
	admin      bool
	allOffices bool
	offices    map[string]bool
	// limiter is the key's bucket, handed from principal to principal by
	// reloads; ratePerSecond and burst are its limits when this principal
	// was made (the refusal's detail).
	limiter       tokenBucket
	ratePerSecond float64
	burst         int
	// secrets is how many secrets the key has: with more than one, the
	// access log says which one a request presented.
	secrets int
}

func newPrincipal(k Key, b tokenBucket, ratePerSecond float64, burst int) *principal {
	p := &principal{name: k.Name, namespace: k.namespace(), offices: map[string]bool{}, limiter: b, ratePerSecond: ratePerSecond, burst: burst}
	p.portal = slices.Contains(k.Scopes, ScopePortal)
	p.operator = slices.Contains(k.Scopes, ScopeOperator)
	p.admin = slices.Contains(k.Scopes, ScopeAdmin)
	for _, o := range k.Offices {
		if o == officesAll {
			p.allOffices = true
		}
		p.offices[o] = true
	}
	return p
}

// namespace resolves the key's namespace: its name unless it names one.
func (k *Key) namespace() string {
	if k.Namespace != nil {
		return *k.Namespace
	}
	return k.Name
}

// office reports whether the key's office list allows office.
func (p *principal) office(office string) bool { return p.allOffices || p.offices[office] }

// keyring finds the principal of a presented bearer secret.
//
// Secrets are compared in constant time. The presented secret is hashed
// with SHA-256 (its time depends on its length alone, which is no
// secret) and its digest looked up in two steps:
//
//  1. The digest's first 8 bytes, as a uint64, pick the candidates from
//     a map. A uint64 compares in one instruction, and its value says
//     nothing an attacker can use: finding a presented secret whose
//     digest starts like a real one's is a preimage search on SHA-256.
//  2. Every candidate's whole digest is compared with
//     subtle.ConstantTimeCompare, and all of them are, whatever matched.
//
// So the time an answer takes does not depend on how many bytes of the
// presented secret match a real one, unlike a compare of the secrets
// themselves (bytes.Equal stops at the first difference) or of map keys
// of the whole digest (the runtime's memequal does too). The secrets are
// not kept, only their digests. Safe for concurrent use (read-only after
// construction; a reload builds a new keyring).
type keyring struct {
	byPrefix map[uint64][]keyDigest
	// byName is every principal by key name, for the next reload.
	byName  map[string]*principal
	keys    []Key // as loaded, for the next reload's checks
	secrets int
}

// keyDigest is one secret's SHA-256 digest, its key, and its place in
// the key's secrets (from 1).
type keyDigest struct {
	digest   [sha256.Size]byte
	p        *principal
	position int
}

// newKeyring builds the keyring of keys, valid by validateKeys. A key
// that prev (nil at start) has by the same name keeps prev's bucket, with
// its limits set to the new ones at now (a steady clock reading), so a
// reload neither refills nor empties it; a new key gets a new bucket.
// rates gives a key's rate and burst.
func newKeyring(keys []Key, prev interface{ principal(string) *principal }, rates func(Key) (float64, int), now time.Time) *keyring {
	r := &keyring{byPrefix: map[uint64][]keyDigest{}, byName: make(map[string]*principal, len(keys)), keys: keys}
	if prev == nil {
		prev = (*keyring)(nil)
	}
	for _, k := range keys {
		rate, burst := rates(k)
		var b tokenBucket
		if old := prev.principal(k.Name); old != nil {
			b = old.limiter
			if old.ratePerSecond != rate || old.burst != burst {
				b.setLimits(now, rate, burst)
			}
		} else {
			b = newTokenBucket(rate, burst)
		}
		p := newPrincipal(k, b, rate, burst)
		r.byName[k.Name] = p
		for j, s := range k.secrets() {
			d := sha256.Sum256([]byte(s))
			prefix := binary.LittleEndian.Uint64(d[:8])
			r.byPrefix[prefix] = append(r.byPrefix[prefix], keyDigest{digest: d, p: p, position: j + 1})
			r.secrets++
		}
		p.secrets = len(k.secrets())
	}
	return r
}

// principal returns the principal named name, or nil; nil on a nil keyring.
func (r *keyring) principal(name string) *principal {
	if r == nil {
		return nil
	}
	return r.byName[name]
}

// lookup returns the principal of the Authorization header value and
// the place of the secret presented among the key's secrets (from 1), or
// nil.
func (r *keyring) lookup(authorization []byte) (found *principal, position int) {
	const prefix = "Bearer "
	if len(authorization) <= len(prefix) || len(authorization) > len(prefix)+keyBytesMax ||
		!bytes.EqualFold(authorization[:len(prefix)], []byte(prefix)) {
		return nil, 0
	}
	d := sha256.Sum256(authorization[len(prefix):])
	for _, c := range r.byPrefix[binary.LittleEndian.Uint64(d[:8])] {
		if subtle.ConstantTimeCompare(c.digest[:], d[:]) == 1 {
			found, position = c.p, c.position
		}
	}
	return found, position
}
