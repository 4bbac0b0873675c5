package httpapi

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
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
	keyBytesMin     = 16 // a guessable key is no key
	keyBytesMax     = 256
	keyNameBytesMax = 64 // the name is the Actor in history and logs
	keyOfficesMax   = 4096
)

// keyNamePattern: names appear in logs, metrics and booking history.
var keyNamePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// Key is one API key of the keys file (DESIGN §4). Immutable after
// LoadKeys; safe for concurrent reads.
type Key struct {
	// Key is the secret bearer token.
	Key string `json:"key"`
	// Name identifies the key's owner: the Actor of the changes it makes,
	// the namespace of its Idempotency-Keys, the key of its rate limit.
	Name string `json:"name"`
	// Namespace is the portal the key belongs to: the applicants a
	// portal key acts for, reads and sees events of are the ones of its
	// namespace (namespace.go). Absent: the key's name. Keys of one
	// portal (a rotation) name the same namespace. "" is the legacy
	// namespace: the bookings stored before namespaces existed.
	Namespace *string  `json:"namespace,omitempty"`
	Scopes    []string `json:"scopes"`
	// Offices limits the operator and admin scopes to these office ids,
	// and every key's event feed; "*" allows all. The portal scope's
	// holds and booking actions are not limited by office.
	Offices []string `json:"offices"`
}

// LoadKeys decodes and validates a keys file: a JSON array of keys with
// unique names and keys, known scopes, and at least one office entry.
func LoadKeys(data []byte) ([]Key, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var keys []Key
	if err := dec.Decode(&keys); err != nil {
		return nil, fmt.Errorf("keys file: expected a JSON array of {\"key\",\"name\",\"namespace\",\"scopes\",\"offices\"}: %s", jsonProblem(err))
	}
	if dec.More() {
		return nil, fmt.Errorf("keys file: trailing data after the array")
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
		if len(k.Key) < keyBytesMin || len(k.Key) > keyBytesMax {
			return fmt.Errorf("keys[%d] (%s): key must be %d..%d bytes", i, k.Name, keyBytesMin, keyBytesMax)
		}
		for _, c := range []byte(k.Key) {
			if c <= ' ' || c > '~' {
				return fmt.Errorf("keys[%d] (%s): key must be printable ASCII without spaces", i, k.Name)
			}
		}
		if k.Namespace != nil && *k.Namespace != "" && !keyNamePattern.MatchString(*k.Namespace) {
			return fmt.Errorf("keys[%d] (%s): namespace %q: use 1-64 letters, digits, '.', '_' or '-', or \"\" for the bookings stored before namespaces", i, k.Name, *k.Namespace)
		}
		if names[k.Name] {
			return fmt.Errorf("keys[%d]: name %q is used twice", i, k.Name)
		}
		names[k.Name] = true
		h := sha256.Sum256([]byte(k.Key))
		if secrets[h] {
			return fmt.Errorf("keys[%d] (%s): the same key is listed twice", i, k.Name)
		}
		secrets[h] = true
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
	}
	return nil
}

// principal is a key as the server uses it. Immutable; safe for
// concurrent reads.
type principal struct {
	name string
	// namespace is the key's namespace (Key.Namespace, resolved).
	namespace  string
	portal     bool
	operator   bool
	admin      bool
	allOffices bool
	offices    map[string]bool
	limiter    tokenBucket
}

func newPrincipal(k Key, b tokenBucket) *principal {
	p := &principal{name: k.Name, namespace: k.namespace(), offices: map[string]bool{}, limiter: b}
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

// keyring finds the principal of a presented bearer key.
//
// The presented key is hashed with SHA-256 and the digest looked up in a
// map: the map lookup's timing depends on the digest, which an attacker
// cannot steer towards a real key's digest, so the comparison leaks nothing
// usable about the secrets (unlike a byte-wise compare of the keys
// themselves). Safe for concurrent use (read-only after construction).
type keyring struct {
	byDigest map[[32]byte]*principal
}

func newKeyring(keys []Key, bucket func() tokenBucket) *keyring {
	r := &keyring{byDigest: make(map[[32]byte]*principal, len(keys))}
	for _, k := range keys {
		r.byDigest[sha256.Sum256([]byte(k.Key))] = newPrincipal(k, bucket())
	}
	return r
}

// lookup returns the principal of the Authorization header value, or nil.
func (r *keyring) lookup(authorization []byte) *principal {
	const prefix = "Bearer "
	if len(authorization) <= len(prefix) || len(authorization) > len(prefix)+keyBytesMax ||
		!bytes.EqualFold(authorization[:len(prefix)], []byte(prefix)) {
		return nil
	}
	return r.byDigest[sha256.Sum256(authorization[len(prefix):])]
}
