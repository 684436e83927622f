// Package configs holds the configuration the dispatcher ships with: message
// templates, and in time policy profiles and holiday calendars.
package configs

import "embed"

// FS is the shipped configuration, compiled into the binary so that a scratch
// container needs no files beside it. A directory on disk with the same layout
// (os.DirFS) can be passed wherever FS is accepted to override it.
//
//go:embed templates profiles holidays
var FS embed.FS
