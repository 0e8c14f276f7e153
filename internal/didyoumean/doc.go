// Package didyoumean finds, among the names a program knows, the ones
// closest to a name the user misspelt, for "did you mean" hints: the
// command's subcommands, the Docker daemon's container names and aliases.
// It imports nothing of the module.
package didyoumean
