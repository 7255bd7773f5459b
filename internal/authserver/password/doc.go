// Package password owns user password hashing: argon2id in the PHC string format
// ($argon2id$v=19$m=...,t=...,p=...$salt$hash), with bounded parameters and constant-time
// verification.
package password
