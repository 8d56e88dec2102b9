package redact

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// ReadNamedFile reads the file a setting names (a configuration field,
// an environment variable). Its error never repeats a value that may be
// a secret pasted in place of the path, which would put it in the log,
// and in a deployment pipeline's output by --check-config: a PEM key or
// certificate, or any text of several lines, is refused unread; a value
// that names nothing on this host (a password put into password_file) is
// not repeated, only why it could not be opened, as the setting's name
// that comes before the error says where it is; a path that names
// something (a file backupd may not read, a directory) is repeated.
func ReadNamedFile(path string) ([]byte, error) {
	if strings.ContainsAny(path, "\r\n") || strings.Contains(path, "-----BEGIN") {
		return nil, errors.New("must be the path of a file; it holds several lines or PEM text (not repeated): put them in a file, and name the file here")
	}
	b, err := os.ReadFile(path)
	if err == nil {
		return b, nil
	}
	if !NamesNothing(path) {
		return nil, fmt.Errorf("cannot be read: %w", err)
	}
	why := err
	if pe, ok := errors.AsType[*fs.PathError](err); ok {
		why = pe.Err
	}
	where := ""
	if !filepath.IsAbs(path) {
		if wd, err := os.Getwd(); err == nil {
			where = "; a relative path is taken from backupd's working directory, " + wd
		}
	}
	return nil, fmt.Errorf("cannot be read: %w (the path is not repeated: a value that names nothing here may be a secret put in place of its file's path%s)",
		notRepeated{why, err}, where)
}

// notRepeated is the reason a file could not be opened, without the path
// its text would repeat, that still unwraps to the whole error (errors.Is
// fs.ErrNotExist).
type notRepeated struct{ why, err error }

func (e notRepeated) Error() string { return e.why.Error() }
func (e notRepeated) Unwrap() error { return e.err }

// NamesNothing reports whether path, the value of a setting that names a
// file, names nothing on this host: such a value may be a secret put in
// its file's place, and is not repeated; one that names something (a
// file backupd may not read, a directory) is a path.
func NamesNothing(path string) bool {
	_, err := os.Lstat(path)
	return err != nil
}
