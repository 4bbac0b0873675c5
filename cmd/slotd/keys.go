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

// devKeys reads the development keys from dataDir, creating them on first use.
func devKeys(dataDir string) ([]byte, error) {
	path := filepath.Join(dataDir, devKeysFile)
	data, err := os.ReadFile(path)
	if err == nil {
		return data, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("cannot read development keys: %w", err)
	}
	entries := []httpapi.Key{
		{Key: "dev-portal-" + randomToken(), Name: "demo-portal", Scopes: []string{"portal"}, Offices: []string{"*"}},
		{Key: "dev-operator-" + randomToken(), Name: "demo-operator", Scopes: []string{"operator"}, Offices: []string{"*"}},
		{Key: "dev-admin-" + randomToken(), Name: "demo-admin", Scopes: []string{"admin", "portal", "operator"}, Offices: []string{"*"}},
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
// so tickets stay valid across restarts.
func ticketSecret(dataDir string) ([]byte, error) {
	path := filepath.Join(dataDir, secretFile)
	data, err := os.ReadFile(path)
	if err == nil && len(data) >= 32 {
		return data, nil
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("cannot read ticket secret: %w", err)
	}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return nil, fmt.Errorf("cannot create data directory: %w", err)
	}
	if err := os.WriteFile(path, secret, 0o600); err != nil {
		return nil, fmt.Errorf("cannot write ticket secret: %w", err)
	}
	return secret, nil
}
