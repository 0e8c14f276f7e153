// Package layering holds no code: its test is the one table of the
// dependency rules of the design (cmd -> scan -> dockersave, bridge,
// clairv2, clairv4, report), checked against the packages' imports.
package layering
