/*__SOLUTION__*/

#[cfg(test)]
mod tests {
    #[allow(unused_imports)]
    use super::*;

/*__TESTS__*/
}
