package keys

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// KEKFile is the name of the key-encryption key file in the data directory.
const KEKFile = "keys.kek"

// LoadKEK returns the 32-byte key-encryption key and where it came from ("env" or the file path).
// When envValue is not empty it must hold 32 bytes in base64 (standard or URL alphabet) or hex.
// Otherwise the key is read from {dataDir}/keys.kek, which is created with random content and mode
// 0600 when absent; an existing file readable by group or others is refused.
func LoadKEK(envValue, dataDir string) ([]byte, string, error) {
	if v := strings.TrimSpace(envValue); v != "" {
		k, err := decodeKEK(v)
		if err != nil {
			return nil, "", err
		}
		return k, "env", nil
	}
	if dataDir == "" {
		return nil, "", fmt.Errorf("%w: no environment value and no data directory", ErrKEK)
	}
	path := filepath.Join(dataDir, KEKFile)
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dataDir, 0o700); err != nil {
			return nil, "", fmt.Errorf("%w: %w", ErrKEK, err)
		}
		k := make([]byte, 32)
		if _, err := rand.Read(k); err != nil {
			return nil, "", fmt.Errorf("%w: %w", ErrKEK, err)
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, "", fmt.Errorf("%w: %w", ErrKEK, err)
		}
		_, werr := f.WriteString(base64.StdEncoding.EncodeToString(k) + "\n")
		cerr := f.Close()
		if werr != nil || cerr != nil {
			return nil, "", fmt.Errorf("%w: write %s: %w", ErrKEK, path, errors.Join(werr, cerr))
		}
		return k, path, nil
	case err != nil:
		return nil, "", fmt.Errorf("%w: %w", ErrKEK, err)
	}
	if runtime.GOOS != "windows" {
		st, err := os.Stat(path)
		if err != nil {
			return nil, "", fmt.Errorf("%w: %w", ErrKEK, err)
		}
		if st.Mode().Perm()&0o077 != 0 {
			return nil, "", fmt.Errorf("%w: %s is accessible to group or others (mode %v); chmod 600 it", ErrKEK, path, st.Mode().Perm())
		}
	}
	k, err := decodeKEK(strings.TrimSpace(string(data)))
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", path, err)
	}
	return k, path, nil
}

func decodeKEK(v string) ([]byte, error) {
	for _, dec := range []func(string) ([]byte, error){
		base64.StdEncoding.DecodeString, base64.RawStdEncoding.DecodeString,
		base64.URLEncoding.DecodeString, base64.RawURLEncoding.DecodeString, hex.DecodeString,
	} {
		if k, err := dec(v); err == nil && len(k) == 32 {
			return k, nil
		}
	}
	return nil, fmt.Errorf("%w: must be 32 bytes in base64 or hex", ErrKEK)
}
