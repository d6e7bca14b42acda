package backup

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// KeySize is the length of a key file's key and of a backup's data key (AES-256).
const KeySize = 32

const (
	keyIDLen      = 16
	nonceSize     = 12
	tagSize       = 16
	wrappedKeyLen = nonceSize + KeySize + tagSize
)

var (
	// ErrKeyRequired: the backup is encrypted and no key was given.
	ErrKeyRequired = errors.New("backup is encrypted: a key file is required")
	// ErrWrongKey: the given key is not the one the backup was encrypted with.
	ErrWrongKey = errors.New("wrong key for this backup")
	// ErrBadKeyFile: the key file is not a key this package wrote.
	ErrBadKeyFile = errors.New("bad key file")
)

// GenerateKeyFile writes a new random key to path (mode 0600) as 64 hex digits and a newline. It never replaces an
// existing file: that key may be the only way to read existing backups.
func GenerateKeyFile(path string) error {
	key := make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		return fmt.Errorf("generate key: %w", err)
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write key file %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("write key file %s: %w", path, err)
	}
	if _, err := tmp.WriteString(hex.EncodeToString(key) + "\n"); err != nil {
		tmp.Close()
		return fmt.Errorf("write key file %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write key file %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write key file %s: %w", path, err)
	}
	// A hard link appears atomically and fails if the name is taken, so a complete key file is the only possible result.
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("key file %s already exists: not replacing it (backups may depend on it); choose another path", path)
		}
		return fmt.Errorf("write key file %s: %w", path, err)
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("write key file %s: %w", path, err)
	}
	return nil
}

// LoadKeyFile reads a key file written by GenerateKeyFile.
func LoadKeyFile(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("key file %s does not exist: give the key file the backup was made with: %w", path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("read key file %s: %w", path, err)
	}
	key, err := parseKey(data)
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	return key, nil
}

// parseKey decodes a key file's content: 64 hex digits, optionally followed by a line end.
func parseKey(data []byte) ([]byte, error) {
	text := strings.TrimRight(string(data), "\r\n")
	if len(text) != 2*KeySize {
		return nil, fmt.Errorf("holds %d characters, want %d hex digits (a 256-bit key): %w", len(text), 2*KeySize, ErrBadKeyFile)
	}
	key, err := hex.DecodeString(text)
	if err != nil {
		return nil, fmt.Errorf("not a hex key (%v): %w", err, ErrBadKeyFile)
	}
	return key, nil
}

// KeyID names a key-file key without revealing it: the first 16 hex digits of its SHA-256.
func KeyID(key []byte) string {
	sum := sha256.Sum256(key)
	return hex.EncodeToString(sum[:])[:keyIDLen]
}

func newGCM(key []byte) (cipher.AEAD, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("key is %d bytes, want %d: %w", len(key), KeySize, ErrBadKeyFile)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// newEncryption makes a backup's random data key and its wrapped form under the key-file key.
func newEncryption(id string, key []byte) (*Encryption, cipher.AEAD, error) {
	wrapper, err := newGCM(key)
	if err != nil {
		return nil, nil, err
	}
	dataKey := make([]byte, KeySize)
	nonce := make([]byte, nonceSize, wrappedKeyLen)
	if _, err := rand.Read(dataKey); err != nil {
		return nil, nil, fmt.Errorf("generate data key: %w", err)
	}
	if _, err := rand.Read(nonce); err != nil {
		return nil, nil, fmt.Errorf("generate data key: %w", err)
	}
	wrapped := wrapper.Seal(nonce, nonce, dataKey, []byte(id))
	aead, err := newGCM(dataKey)
	if err != nil {
		return nil, nil, err
	}
	return &Encryption{Algorithm: EncryptionAESGCM, KeyID: KeyID(key), WrappedKey: wrapped}, aead, nil
}

// openEncryption unwraps a backup's data key. A nil e (not encrypted) gives a nil AEAD whatever the key.
func openEncryption(db, id string, e *Encryption, key []byte) (cipher.AEAD, error) {
	if e == nil {
		return nil, nil
	}
	name := db + "/" + id
	if key == nil {
		return nil, fmt.Errorf("backup %s is encrypted (key %s): give its key file: %w", name, e.KeyID, ErrKeyRequired)
	}
	wrapper, err := newGCM(key)
	if err != nil {
		return nil, fmt.Errorf("backup %s: %w", name, err)
	}
	if KeyID(key) != e.KeyID || len(e.WrappedKey) != wrappedKeyLen {
		return nil, fmt.Errorf("backup %s was encrypted with key %s, the key file given is key %s: %w", name, e.KeyID, KeyID(key), ErrWrongKey)
	}
	dataKey, err := wrapper.Open(nil, e.WrappedKey[:nonceSize], e.WrappedKey[nonceSize:], []byte(id))
	if err != nil {
		return nil, fmt.Errorf("backup %s: the data key does not open with key %s (the key or the wrapped key was altered): %w", name, e.KeyID, ErrWrongKey)
	}
	return newGCM(dataKey)
}

// chunkAAD binds a sealed chunk to its backup and its plaintext, so objects cannot be swapped within or across backups.
func chunkAAD(id, sha string) []byte { return []byte(id + "/" + sha) }

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
