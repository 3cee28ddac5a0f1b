// Run by tests/config_test.ts with the `test` task's permission flags.
Deno.test("probe", () => {
  const q = (d: Deno.PermissionDescriptor) => Deno.permissions.querySync(d).state;
  console.log(JSON.stringify({
    read: q({ name: "read" }),
    writeTmp: q({ name: "write", path: ".test-tmp" }),
    writeElsewhere: q({ name: "write", path: "runs" }),
    net: q({ name: "net", host: "127.0.0.1" }),
    netElsewhere: q({ name: "net", host: "example.com" }),
    run: q({ name: "run", command: "deno" }),
  }));
});
