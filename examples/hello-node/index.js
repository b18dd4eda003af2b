// hello-node: an async Lambda-style handler on thaw's nodejs runtime. CommonJS, so that its
// instances start from a heap snapshot (the `restore` start kind; an ES module starts in full).
exports.handler = async (event, context) => {
  const name = event?.name ?? "world";
  console.log(`greeting ${name}`);
  return { message: `hello, ${name}`, requestId: context.awsRequestId };
};
