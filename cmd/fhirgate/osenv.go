package main

import "os"

func lookupOSEnv(k string) (string, bool) { return os.LookupEnv(k) }
