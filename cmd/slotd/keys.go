package main

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"slotd/httpapi"
)

// devKeysFile holds the development keys -demo creates, inside the data
// directory, so a restarted demo keeps its keys.
const devKeysFile = "dev-keys.json"

// devPortalName is the development portal key's name, and so its namespace.
const devPortalName = "demo-portal"

// devKeys reads the development keys from dataDir, creating them on first use.
func devKeys(dataDir string) ([]byte, error) {
	path := filepath.Join(dataDir, devKeysFile)
	data, err := os.ReadFile(path)
	if err == nil {
		return legacyDevKeys(data)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("cannot read development keys: %w", err)
	}
	// Each key names its namespace, so that a file without any is known
	// to be from before namespaces (legacyDevKeys).
	portal, operator, admin := devPortalName, "demo-operator", "demo-admin"
	entries := []httpapi.Key{
		{Key: "dev-portal-" + randomToken(), Name: portal, Namespace: &portal, Scopes: []string{"portal"}, Offices: []string{"*"}},
		{Key: "dev-operator-" + randomToken(), Name: operator, Namespace: &operator, Scopes: []string{"operator"}, Offices: []string{"*"}},
		{Key: "dev-admin-" + randomToken(), Name: admin, Namespace: &admin, Scopes: []string{"admin", "portal", "operator"}, Offices: []string{"*"}},
	}
	data, err = json.MarshalIndent(entries, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return nil, fmt.Errorf("cannot create data directory: %w", err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return nil, fmt.Errorf("cannot write development keys: %w", err)
	}
	return data, nil
}

// legacyDevKeys gives the demo portal key of a development keys file
// written before portal namespaces the namespace "" of the bookings it
// made then, so that `make run` on such a data directory finds them
// instead of refusing to start (httpapi.CheckLegacyBookings). A file that
// names any namespace is taken as it is.
func legacyDevKeys(data []byte) ([]byte, error) {
	var keys []httpapi.Key
	if err := json.Unmarshal(data, &keys); err != nil {
		return data, nil // LoadKeys says what is wrong with it
	}
	for _, k := range keys {
		if k.Namespace != nil {
			return data, nil
		}
	}
	legacy := ""
	for i := range keys {
		if keys[i].Name == devPortalName {
			keys[i].Namespace = &legacy
		}
	}
	return json.Marshal(keys)
}

func randomToken() string {
	var b [18]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("BUG: crypto/rand failed: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// secretFile holds the ticket-signing secret inside the data directory.
const secretFile = "ticket-secret"

// ticketSecret reads the ticket-signing secret, creating it on first use,
// so tickets stay valid across restarts. A file that is there but shorter
// than httpapi.SecretBytesMin stops the start: replacing it would void
// every ticket already printed, and a short file is someone's mistake (a
// truncated copy, a hand-written value) that only they can put right.
func ticketSecret(dataDir string) ([]byte, error) {
	path := filepath.Join(dataDir, secretFile)
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return createTicketSecret(dataDir, path)
	case err != nil:
		return nil, fmt.Errorf("cannot read ticket secret: %w", err)
	case len(data) < httpapi.SecretBytesMin:
		return nil, fmt.Errorf("ticket secret %s holds %d bytes, at least %d bytes are needed: restore the file from a backup "+
			"(tickets signed with it stay valid), or delete it to have a new one made (every ticket issued so far becomes invalid)",
			path, len(data), httpapi.SecretBytesMin)
	}
	return data, nil
}

// createTicketSecret writes a new random secret to path so that it appears
// whole or not at all: written and synced under a temporary name, then
// linked to path, which fails if another start made one meanwhile (then
// that one is read). A crash midway leaves no short secret to refuse.
func createTicketSecret(dataDir, path string) ([]byte, error) {
	secret := make([]byte, httpapi.SecretBytesMin)
	if _, err := rand.Read(secret); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return nil, fmt.Errorf("cannot create data directory: %w", err)
	}
	tmp, err := os.CreateTemp(dataDir, secretFile+".*.tmp")
	if err != nil {
		return nil, fmt.Errorf("cannot write ticket secret: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(secret)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("cannot write ticket secret: %w", err)
	}
	if err := os.Link(tmp.Name(), path); errors.Is(err, fs.ErrExist) {
		return ticketSecret(dataDir)
	} else if err != nil {
		return nil, fmt.Errorf("cannot write ticket secret: %w", err)
	}
	if err := syncDir(dataDir); err != nil {
		return nil, fmt.Errorf("cannot write ticket secret: %w", err)
	}
	return secret, nil
}

// syncDir makes a new name in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
